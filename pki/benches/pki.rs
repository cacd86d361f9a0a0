//! Prints how long a full node PKI takes: 3 CAs, 7 leaves, the service
//! account key pair and 5 kubeconfigs, written to disk, for each key type.
//! For scale it also times the openssl CLI creating the same number of
//! self-signed key pairs (one process per pair, as a shell script would).
//!
//! Run: `cargo bench -p cairn-pki` (optionally `-- --iterations N`).

use std::process::Command;
use std::time::{Duration, Instant};

use cairn_pki::{ClusterPkiSpec, KeyType, PkiPaths, generate};
use time::OffsetDateTime;

/// Key pairs in a full PKI: 3 CAs + 7 leaves + sa + 5 kubeconfig clients.
const KEY_PAIRS: usize = 16;

fn spec(key_type: KeyType) -> ClusterPkiSpec {
    let mut spec = ClusterPkiSpec::new(
        "bench-node".parse().expect("valid node name"),
        "10.0.0.10".parse().expect("valid ip"),
    );
    spec.control_plane_endpoint = Some("10.0.0.100".parse().expect("valid endpoint"));
    spec.key_type = key_type;
    spec
}

fn time_generate(key_type: KeyType) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = PkiPaths::new(dir.path().join("pki"), Some(dir.path().to_path_buf()));
    let spec = spec(key_type);
    let start = Instant::now();
    generate(&spec, &paths, OffsetDateTime::now_utc()).expect("generate");
    start.elapsed()
}

fn time_openssl(key_type: KeyType) -> Option<Duration> {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_args: &[&str] = match key_type {
        KeyType::EcdsaP256 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        KeyType::Rsa2048 => &["-newkey", "rsa:2048"],
    };
    let start = Instant::now();
    for i in 0..KEY_PAIRS {
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-nodes",
                "-days",
                "365",
                "-subj",
                "/CN=bench",
            ])
            .args(key_args)
            .arg("-keyout")
            .arg(dir.path().join(format!("{i}.key")))
            .arg("-out")
            .arg(dir.path().join(format!("{i}.crt")))
            .output()
            .ok()?;
        if !status.status.success() {
            return None;
        }
    }
    Some(start.elapsed())
}

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let median = samples[samples.len() / 2];
    (samples[0], median, samples[samples.len() - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iterations = args
        .iter()
        .position(|a| a == "--iterations")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(20usize);

    println!(
        "full PKI (3 CAs, 7 leaves, sa key, 5 kubeconfigs; {KEY_PAIRS} key pairs), written to disk"
    );
    for (key_type, runs) in [
        (KeyType::EcdsaP256, iterations),
        (KeyType::Rsa2048, (iterations / 4).max(3)),
    ] {
        let _warm_up = time_generate(key_type);
        let samples: Vec<Duration> = (0..runs).map(|_| time_generate(key_type)).collect();
        let (min, median, max) = stats(samples);
        print!(
            "  cairn   {:<10}  median {:>10}  min {:>10}  max {:>10}  ({runs} runs)",
            key_type.name(),
            ms(median),
            ms(min),
            ms(max)
        );
        match time_openssl(key_type) {
            Some(openssl) => println!(
                "\n  openssl {:<10}  {:>17}  for {KEY_PAIRS} self-signed pairs -> cairn is {:.1}x faster",
                key_type.name(),
                ms(openssl),
                openssl.as_secs_f64() / median.as_secs_f64()
            ),
            None => println!("\n  openssl not available; no comparison"),
        }
    }
}
