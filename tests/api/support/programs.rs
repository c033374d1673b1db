//! The example programs under `examples/` (Python and Node.js), run as
//! child processes against a running Signpost. Where an interpreter or a
//! library they need is not installed, a test says so in one loud line and
//! passes, unless `SIGNPOST_REQUIRE_EXAMPLES=1` (as `.ci/run` sets, after
//! installing them), where it fails.

use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

use super::helpers::MANIFEST_DIR;

pub const ENV_REQUIRE_EXAMPLES: &str = "SIGNPOST_REQUIRE_EXAMPLES";

/// Which example runtime.
#[derive(Debug, Clone, Copy)]
pub enum Runtime {
    Python,
    Node,
}

impl Runtime {
    /// The interpreter and the file under `examples/`.
    fn command(self, script: &str) -> Command {
        let dir = PathBuf::from(MANIFEST_DIR).join("examples");
        let mut command = match self {
            Runtime::Python => {
                let mut c = Command::new("python3");
                c.arg(dir.join("python").join(script));
                c
            }
            Runtime::Node => {
                let mut c = Command::new("node");
                c.arg(dir.join("node").join(script));
                c.current_dir(dir.join("node"));
                c
            }
        };
        command.kill_on_drop(true);
        command
    }

    /// Whether the runtime and the libraries the examples use are here;
    /// otherwise why not.
    async fn missing(self) -> Option<String> {
        let (program, args, what): (&str, Vec<String>, &str) = match self {
            Runtime::Python => (
                "python3",
                vec!["-c".into(), "import standardwebhooks, fhirclient".into()],
                "python3 with standardwebhooks and fhirclient (pip install -r examples/python/requirements.txt)",
            ),
            Runtime::Node => (
                "node",
                vec![
                    "--input-type=module".into(),
                    "-e".into(),
                    "await import('standardwebhooks')".into(),
                ],
                "node with standardwebhooks (npm ci in examples/node)",
            ),
        };
        let mut command = Command::new(program);
        command
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Runtime::Node = self {
            command.current_dir(PathBuf::from(MANIFEST_DIR).join("examples/node"));
        }
        match command.status().await {
            Ok(status) if status.success() => None,
            _ => Some(what.to_owned()),
        }
    }

    /// `true` when the test can run; `false` (having said so loudly) when it
    /// must be skipped. Panics instead of skipping under
    /// `SIGNPOST_REQUIRE_EXAMPLES=1`.
    pub async fn available(self, test: &str) -> bool {
        let Some(missing) = self.missing().await else {
            return true;
        };
        if std::env::var(ENV_REQUIRE_EXAMPLES).is_ok_and(|v| v == "1") {
            panic!("{test}: {ENV_REQUIRE_EXAMPLES}=1 but {missing} is not installed");
        }
        eprintln!("EXAMPLE TEST SKIPPED: {test}: {missing} is not installed");
        false
    }
}

/// A running example program, its standard output read line by line.
pub struct Program {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Program {
    /// Start `script` with these arguments and environment variables.
    pub fn start(runtime: Runtime, script: &str, args: &[&str], env: &[(&str, String)]) -> Program {
        let mut command = runtime.command(script);
        command.args(args);
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {script}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        Program {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// Read lines until one satisfies `wanted` (returned), failing after
    /// `patience` or when the program ends first; `seen` collects every
    /// line read.
    pub async fn line_where(
        &mut self,
        seen: &mut Vec<String>,
        patience: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no such line in time; saw {seen:#?}"))
                .expect("reading the program's output");
            let Some(line) = line else {
                panic!("the program ended; saw {seen:#?}");
            };
            seen.push(line.clone());
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Wait for the program to end; its exit status and remaining output.
    pub async fn finish(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = self.lines.next_line().await {
            rest.push(line);
        }
        (self.child.wait().await.expect("the program ran"), rest)
    }
}
