//! `signpost serve`, `signpost worker` and `signpost migrate`.

use std::path::PathBuf;

use crate::{
    config::Config,
    startup::{Application, shutdown_signal},
};

pub(super) async fn serve(config: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}

pub(super) async fn worker(config: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    let components = crate::startup::Components::build(config).await?;
    components.worker.run_until_stopped(shutdown_signal()).await;
    Ok(())
}

pub(super) async fn migrate(config: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    crate::store::open(&config.database_url, 1).await?;
    println!("database is up to date");
    Ok(())
}
