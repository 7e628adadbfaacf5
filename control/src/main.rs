use livemix_control::config::ControlArgs;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: ControlArgs = livemix_common::config::parse();
    livemix_common::memory::tune_allocator();
    livemix_common::telemetry::init_logging(&args.log);
    // Every listener's connection cap is derived from the descriptor limit: raise it before any is bound.
    livemix_common::fds::raise_limit();
    match livemix_control::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("livemix-control failed: {err:#}");
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
