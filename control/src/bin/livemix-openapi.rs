//! Writes the control node's OpenAPI documents: `cargo run -p livemix-control --bin livemix-openapi -- docs/openapi`.
//! A test in `livemix-control` fails while the committed documents differ from what the code generates.

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: livemix-openapi <directory>   (docs/openapi in this repository)");
        return std::process::ExitCode::from(2);
    };
    match livemix_control::openapi::write_all(std::path::Path::new(&dir)) {
        Ok(paths) => {
            for path in paths {
                println!("wrote {}", path.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("writing the OpenAPI documents to {dir}: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
