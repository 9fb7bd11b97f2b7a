//! The `spark-admission` binary: the webhook server and the offline policy tools.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use spark_admission::cli::{self, CheckArgs, MutateArgs};

#[derive(Debug, Parser)]
#[command(
    name = "spark-admission",
    version,
    about = "Policy-driven mutating admission webhook for Apache Spark pods"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what the policies do to a pod (or AdmissionReview) file, offline.
    Mutate(MutateArgs),
    /// Validate a policy directory; lists every error with file:line:column.
    Check(CheckArgs),
    /// Run the TLS admission webhook server.
    Serve(spark_admission::server::ServeArgs),
    /// Write a CA, a serving certificate for the in-cluster Service and a caBundle patch.
    Certs(spark_admission::certs::CertsArgs),
}

fn serve_or_certs(command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => tokio::runtime::Runtime::new()?
            .block_on(spark_admission::server::run(args.clone()))
            .map_err(Into::into),
        Command::Certs(args) => {
            let written = spark_admission::certs::run_certs(args)?;
            for path in [
                &written.ca_cert,
                &written.ca_key,
                &written.cert,
                &written.key,
            ]
            .into_iter()
            .chain(written.cabundle_patch.as_ref())
            {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Command::Mutate(_) | Command::Check(_) => Ok(()),
    }
}

fn main() {
    let cli = Cli::parse();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let result = match &cli.command {
        Command::Mutate(args) => cli::mutate(args, &mut out, &mut err),
        Command::Check(args) => cli::check(args, &mut out),
        other => {
            let code = match serve_or_certs(other) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    cli::EXIT_ERROR
                }
            };
            Ok(code)
        }
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            cli::EXIT_ERROR
        }
    };
    std::process::exit(code);
}
