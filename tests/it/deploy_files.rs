//! What deploy/ ships (issue 11, point 3), checked on this machine: the Dockerfile's
//! ENTRYPOINT + CMD run as a plain process against a temp folder laid out like the image
//! (and its HEALTHCHECK run against it), the systemd unit through `systemd-analyze verify`
//! and its offline security score, and the Kubernetes manifests parsed and checked for what
//! a rollout needs. The policies they carry pass `ward check`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::Ward;
use crate::support::tools::run;
use crate::support::ward::{ward_bin, ward_cli};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

/// The Dockerfile's instructions, continuation lines joined and comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines() {
        let line = line.trim();
        if current.is_empty() && (line.starts_with('#') || line.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                let (word, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((word.to_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

/// The last value of instruction `word` (the one Docker uses).
fn instruction(file: &[(String, String)], word: &str) -> String {
    let hit = file.iter().rev().find(|(w, _)| w == word);
    hit.map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {word} in deploy/Dockerfile"))
}

fn exec_form(value: &str, what: &str) -> Vec<String> {
    serde_json::from_str(value).unwrap_or_else(|e| panic!("{what} is not exec form ({e}): {value}"))
}

/// An absolute path inside the image, placed under `root` instead.
fn in_root(root: &Path, arg: &str) -> String {
    match arg.strip_prefix('/') {
        Some(rel) => root.join(rel).to_str().expect("utf-8").to_owned(),
        None => arg.to_owned(),
    }
}

#[test]
fn the_dockerfile_entrypoint_and_cmd_run_ward_against_the_image_layout() {
    let file = dockerfile();
    let froms = file.iter().filter(|(w, _)| w == "FROM").count();
    assert!(froms >= 2, "multi-stage: {froms} FROM");
    let user = instruction(&file, "USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    let expose = instruction(&file, "EXPOSE");
    let entrypoint = exec_form(&instruction(&file, "ENTRYPOINT"), "ENTRYPOINT");
    let cmd = exec_form(&instruction(&file, "CMD"), "CMD");
    let workdir = instruction(&file, "WORKDIR");
    // The binary ENTRYPOINT names is the one the build stage copies in.
    let copies: Vec<&String> = file
        .iter()
        .filter(|(w, _)| w == "COPY")
        .map(|(_, v)| v)
        .collect();
    assert!(
        copies
            .iter()
            .any(|c| c.starts_with("--from=") && c.ends_with(&entrypoint[0])),
        "{copies:?}"
    );
    // The policy the image ships, where the image puts it.
    let (policy_src, policy_dst) = copies
        .iter()
        .filter_map(|c| c.split_once(' '))
        .find(|(src, _)| src.ends_with("policy.yaml"))
        .expect("COPY of the policy");

    let root = tempfile::tempdir().expect("root");
    let dst = PathBuf::from(in_root(root.path(), policy_dst));
    std::fs::create_dir_all(dst.parent().expect("folder")).expect("mkdir");
    for dir in ["ward/ca", "ward/flows"] {
        std::fs::create_dir_all(root.path().join(dir)).expect("mkdir");
    }
    // The image's policy, on ports the OS picks: the test must not take 8080 and 9090.
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(policy_src))
        .expect("the shipped policy");
    let admin_port = "127.0.0.1:9090";
    assert!(shipped.contains(admin_port) && expose.contains("9090") && expose.contains("8080"));
    let policy = shipped
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace(admin_port, "127.0.0.1:0");
    std::fs::write(&dst, policy).expect("policy");

    let mut command = Command::new(ward_bin());
    command
        .args(
            entrypoint[1..]
                .iter()
                .chain(&cmd)
                .map(|a| in_root(root.path(), a)),
        )
        .current_dir(in_root(root.path(), &workdir));
    let ward = Ward::spawn(root, dst.clone(), command);
    let admin = ward.admin_addr();

    // The HEALTHCHECK's own command, pointed at the admin port this run got.
    let healthcheck = instruction(&file, "HEALTHCHECK");
    let (_, probe) = healthcheck.split_once("CMD ").expect("HEALTHCHECK … CMD");
    let probe = exec_form(probe, "HEALTHCHECK CMD");
    let port = admin.port().to_string();
    let probe: Vec<String> = probe.iter().map(|a| a.replace("9090", &port)).collect();
    let mut check = Command::new(&probe[0]);
    check.args(&probe[1..]);
    let out = run(check, Duration::from_secs(10));
    assert!(out.success(), "HEALTHCHECK against a live ward: {out:#?}");
    // …and it fails when nothing answers.
    drop(ward);
    let mut check = Command::new(&probe[0]);
    check.args(&probe[1..]);
    assert!(
        !run(check, Duration::from_secs(10)).success(),
        "HEALTHCHECK with ward stopped"
    );
}

/// The unit with its binary replaced by the one under test (verify checks it exists).
fn unit_here(dir: &Path) -> PathBuf {
    let unit = read("systemd/ward.service").replace("/usr/local/bin/ward", ward_bin());
    let path = dir.join("ward.service");
    std::fs::write(&path, unit).expect("unit");
    path
}

/// The unit's `Key=value` settings of `[Service]`, several values per key kept.
fn unit_settings() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in read("systemd/ward.service").lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
        } else if section == "[Service]"
            && let Some((k, v)) = line.split_once('=')
            && !line.starts_with('#')
        {
            out.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    out
}

#[test]
fn the_systemd_unit_is_confined_and_verifies() {
    let s = unit_settings();
    let one = |k: &str| s.get(k).map(|v| v.join(" ")).unwrap_or_default();
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert!(
        one("User") == "ward" || one("DynamicUser") == "yes",
        "{s:?}"
    );
    let rw = one("ReadWritePaths");
    // The folders the unit's policy writes to are the writable ones.
    let policy = read("systemd/policy.yaml");
    let ca_dir = policy
        .lines()
        .find_map(|l| l.strip_prefix("ca_dir:"))
        .map(str::trim)
        .expect("ca_dir in systemd/policy.yaml");
    assert!(rw.split(' ').any(|p| p == ca_dir), "{rw} holds {ca_dir}");
    assert!(rw.contains("flows"), "{rw}");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("policy.yaml"), &policy).expect("policy");
    let checked = ward_cli(&["-c", "policy.yaml", "check"], dir.path());
    assert!(checked.success(), "the unit's policy: {checked:#?}");

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "\n!!!!!!!! SKIPPED: systemd-analyze is not installed: the unit was not verified !!!!!!!!\n"
        );
        return;
    }
    let unit = unit_here(dir.path());
    let mut verify = Command::new("systemd-analyze");
    verify.arg("verify").arg(&unit);
    let out = run(verify, Duration::from_secs(30));
    assert!(
        out.success() && out.stderr.trim().is_empty(),
        "systemd-analyze verify: {out:#?}"
    );
    // The offline exposure score (0 safest … 10): 2.5 is well inside "OK".
    let mut security = Command::new("systemd-analyze");
    security
        .args(["security", "--offline=true", "--threshold=25"])
        .arg(&unit);
    let out = run(security, Duration::from_secs(30));
    let score = out
        .stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"));
    assert!(
        out.success(),
        "systemd-analyze security: {score:?}\n{out:#?}"
    );
    eprintln!("{}", score.unwrap_or("no score line"));
}

fn manifest(file: &str) -> Value {
    let text = read(&format!("k8s/{file}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("deploy/k8s/{file}: {e}"))
}

fn kind(v: &Value, want: &str) {
    assert_eq!(v["kind"], want, "{v:#}");
}

#[test]
fn the_kubernetes_manifests_hold_what_a_rollout_needs() {
    let kustomization = manifest("kustomization.yaml");
    for r in kustomization["resources"].as_array().expect("resources") {
        let file = r.as_str().expect("a file name");
        assert!(
            deploy(&format!("k8s/{file}")).exists(),
            "kustomization names {file}"
        );
    }
    let config = manifest("configmap.yaml");
    kind(&config, "ConfigMap");
    let policy = config["data"]["policy.yaml"]
        .as_str()
        .expect("data.policy.yaml");

    // The ConfigMap's policy passes `ward check` in the pod's layout.
    let root = tempfile::tempdir().expect("root");
    for d in ["ward/config", "ward/secrets", "ward/ca"] {
        std::fs::create_dir_all(root.path().join(d)).expect("mkdir");
    }
    std::fs::write(root.path().join("ward/config/policy.yaml"), policy).expect("policy");
    std::fs::write(
        root.path().join("ward/secrets/admin-token"),
        "k8s-test-token-0123456789\n",
    )
    .expect("token");
    let checked = ward_cli(&["-c", "ward/config/policy.yaml", "check"], root.path());
    assert!(checked.success(), "the ConfigMap's policy: {checked:#?}");
    let admin_port: u16 = policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("admin:"))
        .and_then(|a| a.trim().trim_matches('"').rsplit(':').next()?.parse().ok())
        .expect("admin: in the ConfigMap's policy");
    let grace = policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("shutdown_grace:"))
        .and_then(|g| g.trim().strip_suffix('s')?.parse::<u64>().ok())
        .expect("shutdown_grace: Ns in the ConfigMap's policy");

    let dep = manifest("deployment.yaml");
    kind(&dep, "Deployment");
    assert!(
        dep["spec"]["replicas"].as_u64().is_some_and(|r| r >= 2),
        "replicas"
    );
    let labels = &dep["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&dep["spec"]["selector"]["matchLabels"], labels);
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let ports = c["ports"].as_array().expect("ports");
    let port_of = |name: &Value| -> u64 {
        match name {
            Value::Number(n) => n.as_u64().expect("port"),
            named => ports
                .iter()
                .find(|p| &p["name"] == named)
                .and_then(|p| p["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("no container port {named}")),
        }
    };
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(
            port_of(&get["port"]),
            u64::from(admin_port),
            "{probe} on the admin port"
        );
    }
    let pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .expect("preStop exec")
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        pre_stop.contains("kill -TERM 1"),
        "preStop starts the drain: {pre_stop}"
    );
    assert!(
        pre_stop.contains("while kill -0 1"),
        "preStop waits for it: {pre_stop}"
    );
    let termination = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace period");
    assert!(
        termination > grace + 5,
        "{termination}s leaves room for the preStop and a {grace}s drain"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let mounts = c["volumeMounts"].as_array().expect("mounts");
    let volumes = pod["volumes"].as_array().expect("volumes");
    let mounted = |path: &str| -> &Value {
        let m = mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("no mount at {path}"));
        assert!(
            m.get("subPath").is_none(),
            "{path}: a subPath mount never updates"
        );
        volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .expect("the mount's volume")
    };
    assert_eq!(
        mounted("/ward/config")["configMap"]["name"],
        config["metadata"]["name"]
    );
    let ca = manifest("secret.yaml");
    kind(&ca, "Secret");
    assert!(ca["stringData"]["ca.pem"].is_string() && ca["stringData"]["ca.key"].is_string());
    assert_eq!(
        mounted("/ward/ca")["secret"]["secretName"],
        ca["metadata"]["name"]
    );
    let token = manifest("secret-admin-token.yaml");
    kind(&token, "Secret");
    assert!(token["stringData"]["admin-token"].is_string());
    assert_eq!(
        mounted("/ward/secrets")["secret"]["secretName"],
        token["metadata"]["name"]
    );

    let svc = manifest("service.yaml");
    kind(&svc, "Service");
    assert_eq!(&svc["spec"]["selector"], labels);
    for p in svc["spec"]["ports"].as_array().expect("service ports") {
        port_of(&p["targetPort"]);
    }
    // The PROXY-protocol annotations, as commented examples for the common clouds.
    let text = read("k8s/service.yaml");
    for annotation in [
        "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol",
        "service.beta.kubernetes.io/do-loadbalancer-enable-proxy-protocol",
        "load-balancer.hetzner.cloud/uses-proxyprotocol",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with('#') && l.contains(annotation)),
            "{annotation} as a commented example"
        );
    }
    assert!(text.contains("proxy-pp") && policy.contains("proxy_protocol: v2"));

    let pdb = manifest("pdb.yaml");
    kind(&pdb, "PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    let min = pdb["spec"]["minAvailable"].as_u64().expect("minAvailable");
    assert!(min >= 1 && min < dep["spec"]["replicas"].as_u64().unwrap_or(0));

    let hpa = manifest("hpa.yaml");
    kind(&hpa, "HorizontalPodAutoscaler");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        dep["metadata"]["name"]
    );
    assert!(hpa["spec"]["minReplicas"].as_u64().is_some_and(|m| m >= 2));
    assert!(
        c["resources"]["requests"]["cpu"].is_string(),
        "CPU utilisation needs a request"
    );
}
