//! How to trust ward's CA on each platform, as data: the onboarding page and `ward ca show`
//! both render this one list, so the two cannot drift. Pure; the words only, no markup.

/// Where the steps find the files and the proxy: download names on the page, real paths in
/// `ward ca show`.
#[derive(Debug, Clone)]
pub struct Files {
    /// The CA as PEM.
    pub pem: String,
    /// The CA as DER (`.crt`, what Windows and Android open).
    pub der: String,
    /// The iOS/macOS configuration profile.
    pub profile: String,
    /// `host:port` of the proxy, for the commands that name it.
    pub proxy: String,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Words: a click path, a warning.
    Say(String),
    /// A command to paste into a shell.
    Run(String),
}

/// One platform's steps.
#[derive(Debug, Clone)]
pub struct Platform {
    /// A stable anchor (`#windows`).
    pub id: &'static str,
    /// The heading.
    pub title: &'static str,
    /// In order.
    pub steps: Vec<Step>,
}

/// The name the CA is filed under in stores that ask for one.
pub const NICKNAME: &str = "ward interception CA";

fn say(s: impl Into<String>) -> Step {
    Step::Say(s.into())
}

fn run(s: impl Into<String>) -> Step {
    Step::Run(s.into())
}

/// Every platform, operating systems first, then browsers, then language runtimes and tools.
pub fn platforms(f: &Files) -> Vec<Platform> {
    let mut out = operating_systems(f);
    out.extend(browsers(f));
    out.extend(tools(f));
    out
}

fn operating_systems(f: &Files) -> Vec<Platform> {
    let (pem, der, profile) = (&f.pem, &f.der, &f.profile);
    vec![
        Platform {
            id: "windows",
            title: "Windows",
            steps: vec![
                say(format!(
                    "Open {der}, choose Install Certificate…, Local Machine, \"Place all certificates in the following store\", Browse…, Trusted Root Certification Authorities, then Finish."
                )),
                say("Or, in a terminal run as administrator:"),
                run(format!("certutil -addstore -f Root {pem}")),
                say(format!(
                    "Without administrator rights, for your user only: certutil -user -addstore -f Root {pem}. Edge and Chrome use this store; Firefox has its own (below)."
                )),
            ],
        },
        Platform {
            id: "macos",
            title: "macOS",
            steps: vec![
                say(format!(
                    "Open {pem} with Keychain Access, add it to the System keychain, double-click \"{NICKNAME}\", open Trust and set \"When using this certificate\" to Always Trust."
                )),
                say("Or in Terminal:"),
                run(format!(
                    "sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {pem}"
                )),
                say(format!(
                    "Or open the profile {profile} and install it in System Settings → Privacy & Security → Profiles (General → Device Management on recent versions)."
                )),
            ],
        },
        Platform {
            id: "ios",
            title: "iOS and iPadOS",
            steps: vec![
                say(format!(
                    "In Safari (other browsers cannot install profiles), download the profile {profile} and allow the download."
                )),
                say(
                    "Settings → General → VPN & Device Management (or \"Profile Downloaded\" at the top of Settings) → the ward profile → Install.",
                ),
                say(format!(
                    "Then Settings → General → About → Certificate Trust Settings, and turn on full trust for \"{NICKNAME}\". Until you do, the profile is installed but TLS does not trust it."
                )),
            ],
        },
        Platform {
            id: "android",
            title: "Android",
            steps: vec![
                say(format!(
                    "Download {der}, then Settings → Security (& privacy) → More security settings → Encryption & credentials → Install a certificate → CA certificate (the path differs between vendors)."
                )),
                say(
                    "This adds a user CA. Since Android 7 apps ignore user CAs unless they opt in with a network security config (<certificates src=\"user\"/> in their trust-anchors), so most apps will still fail while Chrome works. A system CA needs a rooted device or an emulator image.",
                ),
            ],
        },
        Platform {
            id: "debian",
            title: "Debian and Ubuntu",
            steps: vec![
                say("The file must be PEM and its name must end in .crt:"),
                run(format!(
                    "sudo cp {pem} /usr/local/share/ca-certificates/ward-ca.crt"
                )),
                run("sudo update-ca-certificates"),
            ],
        },
        Platform {
            id: "fedora",
            title: "Fedora, RHEL and CentOS",
            steps: vec![
                run(format!(
                    "sudo cp {pem} /etc/pki/ca-trust/source/anchors/ward-ca.pem"
                )),
                run("sudo update-ca-trust"),
            ],
        },
        Platform {
            id: "arch",
            title: "Arch Linux",
            steps: vec![
                run(format!("sudo trust anchor --store {pem}")),
                say(format!(
                    "Or: sudo cp {pem} /etc/ca-certificates/trust-source/anchors/ward-ca.crt && sudo update-ca-trust"
                )),
            ],
        },
    ]
}

fn browsers(f: &Files) -> Vec<Platform> {
    let pem = &f.pem;
    vec![
        Platform {
            id: "firefox",
            title: "Firefox",
            steps: vec![
                say(format!(
                    "Firefox keeps its own store: Settings → Privacy & Security → Certificates → View Certificates… → Authorities → Import…, choose {pem} and tick \"Trust this CA to identify websites\"."
                )),
                say(
                    "Or let it trust what the system trusts (Windows and macOS): in about:config set security.enterprise_roots.enabled to true.",
                ),
                say(
                    "Managed installs: an enterprise policy (policies.json in the distribution folder) with Certificates.Install listing the file:",
                ),
                run(format!(
                    "{{\"policies\": {{\"Certificates\": {{\"Install\": [\"{pem}\"]}}}}}}"
                )),
                say("From a shell, into one profile's NSS database (libnss3-tools):"),
                run(format!(
                    "certutil -d sql:PROFILE_DIR -A -t \"C,,\" -n \"{NICKNAME}\" -i {pem}"
                )),
            ],
        },
        Platform {
            id: "chromium",
            title: "Chromium and Chrome",
            steps: vec![
                say(
                    "Windows, macOS, ChromeOS and Android: Chrome trusts the system store; follow the steps for the system above.",
                ),
                say(
                    "Linux: Chrome and Chromium read the NSS database in ~/.pki/nssdb (Settings → Privacy and security → Security → Manage certificates → Authorities → Import…), or with libnss3-tools:",
                ),
                run(format!(
                    "certutil -d sql:$HOME/.pki/nssdb -A -t \"C,,\" -n \"{NICKNAME}\" -i {pem}"
                )),
                say("Restart the browser afterwards."),
            ],
        },
    ]
}

fn tools(f: &Files) -> Vec<Platform> {
    let (pem, proxy) = (&f.pem, &f.proxy);
    let replaces = "It replaces the default bundle: for sites reached without ward too, point it at the system bundle after adding ward's CA there (/etc/ssl/certs/ca-certificates.crt on Debian).";
    vec![
        Platform {
            id: "java",
            title: "Java",
            steps: vec![
                say("Each JDK has its own cacerts store (the default password is changeit):"),
                run(format!(
                    "sudo keytool -importcert -cacerts -alias ward-ca -file {pem} -storepass changeit -noprompt"
                )),
            ],
        },
        Platform {
            id: "python",
            title: "Python",
            steps: vec![
                say("requests uses certifi's bundle, not the system's:"),
                run(format!("export REQUESTS_CA_BUNDLE={pem}")),
                say("The ssl module, urllib, httpx and aiohttp:"),
                run(format!("export SSL_CERT_FILE={pem}")),
                say(replaces),
            ],
        },
        Platform {
            id: "node",
            title: "Node.js",
            steps: vec![
                say("Added to Node's built-in roots; read once, when the process starts:"),
                run(format!("export NODE_EXTRA_CA_CERTS={pem}")),
            ],
        },
        Platform {
            id: "curl",
            title: "curl",
            steps: vec![
                run(format!(
                    "curl --cacert {pem} -x http://{proxy} https://example.com/"
                )),
                say("Or for every curl run in this shell:"),
                run(format!("export CURL_CA_BUNDLE={pem}")),
                say(replaces),
            ],
        },
        Platform {
            id: "git",
            title: "git",
            steps: vec![
                run(format!("git config --global http.sslCAInfo {pem}")),
                run(format!("git config --global http.proxy http://{proxy}")),
                say(replaces),
            ],
        },
        Platform {
            id: "docker",
            title: "Docker",
            steps: vec![
                say(
                    "The daemon (pull, push) trusts the system store: add the CA as for your system above, then restart it. /etc/docker/certs.d/HOST:PORT/ca.crt is for one registry named HOST:PORT, not for a proxy in front of every registry.",
                ),
                run("sudo systemctl restart docker"),
                say(
                    "Docker Desktop uses the macOS keychain or the Windows store. Containers have a store of their own: images must be rebuilt with the CA in them, for example in a Debian-based Dockerfile:",
                ),
                run(
                    "COPY ward-ca.pem /usr/local/share/ca-certificates/ward-ca.crt\nRUN update-ca-certificates",
                ),
            ],
        },
    ]
}
