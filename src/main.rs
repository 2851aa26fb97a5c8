//! ward's command line: run | check | explain | ca | flows. The only place that uses anyhow and decides
//! exit codes; everything else returns typed errors.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use ward::config::{self, Config};
use ward::mitm::ca::{Ca, KeyAccess};
use ward::policy::{Facts, HelloFact, RequestFact};
use ward::target::{Host, Target};
use ward::tls::Ja4;

// glibc malloc let the RSS of a proxy holding a thousand interceptions creep (~250 KiB/min,
// not slowing within 7 minutes) while its live heap stayed flat: the arenas kept the holes
// that requests of many sizes left. jemalloc held the same load flat (BENCHMARKS.md, Soak).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "ward",
    version,
    about = "A forward proxy that reads every TLS ClientHello"
)]
struct Cli {
    /// The policy file. Default: ./policy.yaml, or the embedded default policy if it is missing.
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<PathBuf>,
    /// Log format: human text, or one JSON object per line for machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Start even when the CA key (ca_dir/ca.key) can be read by other users (warned about).
    #[arg(long, global = true)]
    allow_insecure_key: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve; creates the CA in ca_dir at start if the policy inspects and it is missing.
    Run,
    /// Validate the policy file: a one-line summary, or every error with file:line:column.
    Check,
    /// Show which rule decides for a destination, and the facts it used.
    Explain {
        /// HOST or HOST:PORT (default port 443).
        target: String,
        /// The TLS server name, when it differs from HOST.
        #[arg(long)]
        sni: Option<String>,
        /// The client's address.
        #[arg(long, default_value = "127.0.0.1")]
        client: IpAddr,
        /// The authenticated user.
        #[arg(long)]
        user: Option<String>,
        /// The resolved destination address.
        #[arg(long)]
        dst: Option<IpAddr>,
        /// The ClientHello's JA4 fingerprint (as the access log's `ja4` shows it).
        #[arg(long)]
        ja4: Option<String>,
        /// The ClientHello offers ECH (its SNI, if given, is then the ECH public name).
        #[arg(long)]
        ech: bool,
        /// A request's method, judged inside interception (or as plain HTTP with --http).
        #[arg(long)]
        method: Option<String>,
        /// A request's path (the query is ignored), as --method.
        #[arg(long)]
        path: Option<String>,
        /// The request is plain HTTP, forwarded (`GET http://…`): no ClientHello, every
        /// request judged at the target.
        #[arg(long, conflicts_with_all = ["sni", "ja4", "ech"])]
        http: bool,
    },
    /// The interception CA.
    Ca {
        #[command(subcommand)]
        action: CaAction,
    },
    /// Print a `users_file` line for USER: the password is read from stdin (one line), the
    /// line is `USER:` and its bcrypt hash.
    Passwd {
        /// The user name.
        user: String,
        /// bcrypt's cost (each step doubles the work of a check).
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(10..=i64::from(ward::users::MAX_BCRYPT_COST)))]
        cost: u32,
    },
    /// The flow records of inspected connections (the policy's `flows:` file).
    Flows {
        #[command(subcommand)]
        action: FlowsAction,
    },
}

#[derive(Subcommand)]
enum FlowsAction {
    /// Print the flow records as a HAR 1.2 log (JSON) on stdout.
    Har {
        /// The JSON-lines file to read. Default: the policy's `flows` path.
        #[arg(long)]
        input: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CaAction {
    /// Create ca.pem and ca.key in ca_dir (refuses to overwrite unless --force).
    Init {
        #[arg(long)]
        force: bool,
    },
    /// Print the CA's path, SHA-256 fingerprint and how to trust it.
    Show,
    /// Print the CA certificate (PEM, or DER with --der).
    Export {
        #[arg(long)]
        der: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ward: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let key_access = match cli.allow_insecure_key {
        true => KeyAccess::AllowInsecure,
        false => KeyAccess::Private,
    };
    match cli.command {
        Command::Run => {
            let (config, path) = load_config(cli.config.as_deref())?;
            for warning in &config.warnings {
                tracing::warn!("{warning}");
            }
            let options = ward::server::RunOptions { key_access };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?;
            runtime.block_on(ward::server::run(config, path, options))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => match load_config(cli.config.as_deref()) {
            // HTTPS listeners' certificates are read too: a key that does not match is found
            // here, not by the first client. So is the CA key's mode, which `run` refuses.
            Ok((config, _)) => match check_files(&config, key_access) {
                Ok(()) => {
                    for warning in &config.warnings {
                        eprintln!("warning: {warning}");
                    }
                    println!("{}", config.summary());
                    for line in config.list_lines() {
                        println!("{line}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            },
            Err(e) => {
                eprintln!("{e:#}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Explain {
            target,
            sni,
            client,
            user,
            dst,
            ja4,
            ech,
            method,
            path,
            http,
        } => {
            let (config, _) = load_config(cli.config.as_deref())?;
            let default_port = if http { 80 } else { 443 };
            let target = Target::parse_with_default_port(&target, default_port)
                .with_context(|| format!("target {target:?}"))?;
            let sni = sni
                .map(|s| Host::parse(&s).with_context(|| format!("--sni {s:?}")))
                .transpose()?;
            let ja4 = ja4
                .map(|s| Ja4::parse(&s).map_err(anyhow::Error::msg))
                .transpose()
                .context("--ja4")?;
            let line = explain_request(method, path, http)?;
            let facts = Facts {
                // The name asked for stays the host, as in the proxy: an SNI naming another
                // site is a mismatch, not a new target.
                host: Some(&target.host),
                port: target.port,
                client,
                user: user.as_deref(),
                // An IP-literal target is its own destination address.
                dst: dst.or(match target.host {
                    Host::Ip(ip) => Some(ip),
                    Host::Name(_) => None,
                }),
                sni: sni.as_ref(),
                hello: match (&ja4, http) {
                    (_, true) => HelloFact::Absent,
                    (None, false) if sni.is_none() && !ech => HelloFact::Pending,
                    (ja4, false) => HelloFact::Seen {
                        ja4: ja4.as_ref(),
                        ech,
                    },
                },
                request: match &line {
                    Some((method, path)) => RequestFact::Seen { method, path },
                    None => RequestFact::Pending,
                },
            };
            let pinned = {
                use ward::mitm::pinning::store;
                let asked = facts.sni.unwrap_or(&target.host);
                let state = config.ca_dir.join(store::FILE_NAME);
                store::load(&state, std::time::SystemTime::now())
                    .into_iter()
                    .find_map(|(h, p)| (&h == asked).then_some(p))
            };
            let text = ward::explain::explain_with_pinning(&config, &facts, pinned);
            println!("{}", text.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::Ca { action } => {
            let (config, _) = load_config(cli.config.as_deref())?;
            ca_command(&config, action, key_access)
        }
        Command::Passwd { user, cost } => passwd(&user, cost),
        Command::Flows {
            action: FlowsAction::Har { input },
        } => flows_har(cli.config.as_deref(), input),
    }
}

/// `--method`/`--path` as the proxy sees a request: a path alone is a GET, a method alone
/// asks for `/`; the path is normalised like every request path. `--http` without either is
/// `GET /`.
fn explain_request(
    method: Option<String>,
    path: Option<String>,
    http: bool,
) -> anyhow::Result<Option<(String, String)>> {
    if method.is_none() && path.is_none() && !http {
        return Ok(None);
    }
    let method = ward::policy::parse_method(method.as_deref().unwrap_or("GET"))
        .map_err(anyhow::Error::msg)
        .context("--method")?;
    let path = path.unwrap_or_else(|| "/".to_owned());
    let path = path.split(['?', '#']).next().unwrap_or("/");
    if !path.starts_with('/') {
        anyhow::bail!("--path {path:?}: a path starts with \"/\"");
    }
    Ok(Some((method, ward::policy::normalize_path(path))))
}

fn flows_har(config: Option<&Path>, input: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let path = match input {
        Some(p) => p,
        None => load_config(config)?
            .0
            .flows
            .file
            .context("the policy sets no `flows:` file; set one, or pass --input FILE")?,
    };
    let file = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    let har = ward::mitm::har::har_from_lines(std::io::BufReader::new(file))
        .with_context(|| format!("read {}", path.display()))?;
    if har.skipped > 0 {
        tracing::warn!(skipped = har.skipped, path = %path.display(), "lines that are not flow records were skipped");
    }
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &har.doc)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

/// What `ward check` reads beyond the policy: HTTPS listeners' certificates, the CA key's mode.
fn check_files(config: &Config, key_access: KeyAccess) -> anyhow::Result<()> {
    ward::front::entry::cert::check_all(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(warning) = ward::mitm::ca::check_key(&config.ca_dir, key_access)? {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// `ward passwd USER`: one `users_file` line, the password from stdin. bcrypt's `$2y$` form,
/// which Apache's htpasswd writes too, so the file stays usable by both.
fn passwd(user: &str, cost: u32) -> anyhow::Result<ExitCode> {
    use std::io::BufRead;
    if user.is_empty()
        || user.contains(':')
        || user.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        anyhow::bail!(
            "user {user:?}: a name is not empty and holds no ':', blank or control character"
        );
    }
    if std::io::stdin().is_terminal() {
        eprintln!("password for {user} (the input is shown; pipe it in to hide it):");
    }
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("read the password from stdin")?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        anyhow::bail!("empty password on stdin");
    }
    let hash = bcrypt::hash_with_result(password, cost)
        .context("hash the password")?
        .format_for_version(bcrypt::Version::TwoY);
    println!("{user}:{hash}");
    Ok(ExitCode::SUCCESS)
}

fn ca_command(
    config: &Config,
    action: CaAction,
    key_access: KeyAccess,
) -> anyhow::Result<ExitCode> {
    let dir = &config.ca_dir;
    let setup_url = ward::onboarding::Site::setup_url(&config.setup_host);
    match action {
        CaAction::Init { force } => {
            let ca = Ca::init(dir, force)
                .with_context(|| format!("create the CA in {}", dir.display()))?;
            print!("{}", ca.show_text(dir, &setup_url));
        }
        CaAction::Show => {
            let ca = Ca::load(dir, key_access).with_context(|| {
                format!("load the CA from {} (run `ward ca init`)", dir.display())
            })?;
            print!("{}", ca.show_text(dir, &setup_url));
        }
        CaAction::Export { der } => {
            use std::io::Write;
            let ca = Ca::load(dir, key_access).with_context(|| {
                format!("load the CA from {} (run `ward ca init`)", dir.display())
            })?;
            let mut out = std::io::stdout().lock();
            if der {
                out.write_all(ca.cert_der())?;
            } else {
                out.write_all(ca.cert_pem().as_bytes())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `-c FILE`, else ./policy.yaml, else the embedded default (relative paths then resolve
/// against the working directory). Returns the path to watch for reloads.
fn load_config(explicit: Option<&Path>) -> anyhow::Result<(Config, Option<PathBuf>)> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let local = PathBuf::from("policy.yaml");
            if !local.exists() {
                tracing::info!("no ./policy.yaml: using the embedded default policy");
                let config = config::parse(config::EMBEDDED_POLICY, Path::new("<embedded>"))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                return Ok((config, None));
            }
            local
        }
    };
    let config = config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((config, Some(path)))
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}
