//! Writes the operator's CRDs to `crds/` (or prints them), from the Rust types.
//!
//! `crdgen` writes `crds/videosource.yaml` and `crds/recording.yaml` under the workspace root;
//! `crdgen --out-dir DIR` writes them elsewhere; `crdgen --print` prints them as one YAML stream.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;

#[derive(Parser)]
#[command(name = "crdgen", about = "Generate the LiveMix CRD YAML from the operator's Rust types")]
struct Args {
    /// Directory to write the files to [default: the workspace's `crds/`].
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Print the CRDs to stdout instead of writing files.
    #[arg(long)]
    print: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let files = match livemix_operator::crdgen::render() {
        Ok(files) => files,
        Err(err) => {
            eprintln!("error: rendering the CRDs: {err}");
            return ExitCode::FAILURE;
        }
    };
    if args.print {
        let docs: Vec<&str> = files.iter().map(|f| f.yaml.as_str()).collect();
        print!("{}", docs.join("---\n"));
        return ExitCode::SUCCESS;
    }
    let out_dir = args.out_dir.unwrap_or_else(|| {
        let operator = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        operator.parent().unwrap_or(&operator).join("crds")
    });
    if let Err(err) = std::fs::create_dir_all(&out_dir) {
        eprintln!("error: creating {}: {err}", out_dir.display());
        return ExitCode::FAILURE;
    }
    for file in files {
        let path = out_dir.join(file.file_name);
        if let Err(err) = std::fs::write(&path, &file.yaml) {
            eprintln!("error: writing {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
