//! A control plane of a test's own (etcd, kube-apiserver, controller manager, scheduler, kwok),
//! started by `tests/env/cluster.sh` like the shared one, for a scenario that stops the API
//! server process itself: on the shared control plane that would break every test running beside
//! it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::chart::run;

fn env_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/env")
        .join(name)
}

/// Where a child test process finds the control plane its parent started:
/// `<state dir>` of `cluster.sh up`.
pub const CONTROL_PLANE_ENV: &str = "KINESIS_OPERATOR_TEST_CONTROL_PLANE";

#[derive(Debug)]
enum State {
    /// Started here: stopped on drop.
    Owned(tempfile::TempDir),
    /// Started by the parent process.
    Attached(PathBuf),
}

impl State {
    fn path(&self) -> &Path {
        match self {
            Self::Owned(t) => t.path(),
            Self::Attached(p) => p,
        }
    }
}

/// A private control plane; stopped (`cluster.sh down`) on drop by the process that started it.
#[derive(Debug)]
pub struct ControlPlane {
    state: State,
    name: String,
    kubeconfig: PathBuf,
    bin: PathBuf,
}

impl ControlPlane {
    /// Starts one with `nodes` kwok nodes; blocks until its nodes are Ready (cluster.sh waits).
    pub fn start(nodes: usize) -> Result<Self> {
        let state = tempfile::Builder::new()
            .prefix("kinesis-operator-cp.")
            .tempdir()?;
        run(Command::new("bash")
            .arg(env_script("cluster.sh"))
            .args(["up".as_ref(), state.path().as_os_str()])
            .env("CLUSTER_NODES", nodes.to_string()))?;
        Self::load(State::Owned(state))
    }

    /// The control plane of the parent process, when this is the child of
    /// [`ControlPlane::run_test_in_child`].
    pub fn attached() -> Result<Option<Self>> {
        match std::env::var_os(CONTROL_PLANE_ENV) {
            None => Ok(None),
            Some(dir) => Self::load(State::Attached(dir.into())).map(Some),
        }
    }

    fn dir(&self) -> &Path {
        self.state.path()
    }

    fn load(state: State) -> Result<Self> {
        let dir = state.path().to_owned();
        let env = std::fs::read_to_string(dir.join("cluster.env"))
            .with_context(|| format!("reading {}/cluster.env", dir.display()))?;
        let value = |key: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {key}=")))
                .map(str::to_owned)
                .with_context(|| format!("cluster.env without {key}"))
        };
        let name = value("KWOK_CLUSTER_NAME")?;
        let kubeconfig = PathBuf::from(value("KUBECONFIG")?);
        let bin = PathBuf::from(
            value("PATH")?
                .split(':')
                .next()
                .context("cluster.env PATH is empty")?,
        );
        Ok(Self {
            state,
            name,
            kubeconfig,
            bin,
        })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The directory of its kube binaries and helm (first on `cluster.env`'s `PATH`), for a
    /// child process that runs the fleet harness against it.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Runs the test `name` of this test binary again in a child process whose `KUBECONFIG` is
    /// this control plane (the tests' helpers read it from the environment, which a running
    /// test must not change), and fails with its output when it fails.
    pub fn run_test_in_child(&self, name: &str) -> Result<()> {
        let out = Command::new(std::env::current_exe()?)
            .args([name, "--exact", "--nocapture", "--test-threads", "1"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env(CONTROL_PLANE_ENV, self.dir())
            .output()
            .context("running the test in a child process")?;
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The figures, for the log of a passing run too.
        for line in output.lines().filter(|l| l.starts_with("FIGURE")) {
            eprintln!("{line}");
        }
        if !out.status.success() || !output.contains("1 passed") {
            bail!("{name} failed on its own control plane:\n{output}");
        }
        Ok(())
    }

    fn kwok_dir(&self) -> PathBuf {
        self.dir().join("kwok/clusters").join(&self.name)
    }

    /// The kube-apiserver's pid, from kwok's pid file.
    pub fn api_server_pid(&self) -> Result<i32> {
        let path = self.kwok_dir().join("pids/kube-apiserver.pid");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{} holds {text:?}, not a pid", path.display()))
    }

    /// Kills the kube-apiserver process (SIGKILL: no graceful shutdown, as in a crash or an
    /// OOM kill) and waits until it is gone.
    pub fn kill_api_server(&self) -> Result<()> {
        let pid = self.api_server_pid()?;
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -9 {pid} (kube-apiserver) failed");
        }
        // The process was forked by kwokctl and reparented; it is reaped by init, so wait until
        // /proc no longer shows it running.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z "))
        {
            if std::time::Instant::now() > deadline {
                bail!("kube-apiserver {pid} still runs 30 s after SIGKILL");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts the components that are not running (the killed API server) with their original
    /// flags, and waits until it serves again (`kwokctl start cluster`).
    pub fn start_stopped(&self) -> Result<()> {
        run(Command::new(self.bin.join("kwokctl"))
            .args(["start", "cluster", "--name", &self.name])
            .env("KWOK_WORKDIR", self.dir().join("kwok")))?;
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let State::Owned(state) = &self.state else {
            return;
        };
        let _ = Command::new("bash")
            .arg(env_script("cluster.sh"))
            .args(["down".as_ref(), state.path().as_os_str()])
            .env("CLUSTER_NAME", &self.name)
            .output();
    }
}
