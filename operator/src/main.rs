//! `kinesis-operator`: the Kubernetes controller for KinesisIngester resources.

use clap::{Parser, Subcommand};

/// Runs fleets of Kinesis Data Streams ingesters on Kubernetes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the KinesisIngester CustomResourceDefinition, e.g. `kinesis-operator crd | kubectl apply -f -`.
    Crd,
}

fn main() {
    match Cli::parse().command {
        Command::Crd => print!("{}", kinesis_ingester_api::crd_yaml()),
    }
}
