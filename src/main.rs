#![forbid(unsafe_code)]
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "spark-admission", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the TLS admission webhook server.
    Serve(spark_admission::server::ServeArgs),
    /// Write a CA, a serving certificate for the in-cluster Service and a caBundle patch.
    Certs(spark_admission::certs::CertsArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => tokio::runtime::Runtime::new()?
            .block_on(spark_admission::server::run(args))
            .map_err(Into::into),
        Command::Certs(args) => {
            let written = spark_admission::certs::run_certs(&args)?;
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
    }
}
