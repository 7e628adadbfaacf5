use livemix_edge::config::EdgeArgs;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: EdgeArgs = livemix_common::config::parse();
    livemix_common::memory::tune_allocator();
    livemix_common::telemetry::init_logging(&args.log);
    livemix_common::fds::raise_limit();
    match livemix_edge::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("livemix-edge failed: {err:#}");
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
