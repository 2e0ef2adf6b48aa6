//! The bound on the compiler processes of a run. Every compile, preprocessing and probe waits
//! for one of as many slots as there are cores (a change to several files would otherwise start
//! up to six compilers per file at once), and under `make -jN` for a job token too: the first
//! compiler at a time runs on the token make gave this process, each other one on a token it
//! took from make's jobserver, so a run never takes more of the machine than make allows.

use std::io;
use std::process::{Command, Output};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

/// make's jobserver, when `MAKEFLAGS` names one (see [`connect_jobserver`]): tokens are asked
/// for on a helper thread, which hands them over in [`received`].
static JOBSERVER: OnceLock<Option<jobserver::HelperThread>> = OnceLock::new();

/// Connects to the make jobserver that `MAKEFLAGS` names (`--jobserver-auth=R,W`, or
/// `fifo:PATH`), if any. Call it first thing in `main`, before the process opens a file: the
/// descriptors `R,W` are make's only while no file of this process took their numbers. Without
/// the call (or a jobserver), compilers are bounded by the cores alone.
pub fn connect_jobserver() {
    JOBSERVER.get_or_init(|| {
        // SAFETY: called before this process opened any file, so descriptors named in MAKEFLAGS
        // are the ones make passed down or closed; they are checked to be pipes before use.
        let client = unsafe { jobserver::Client::from_env_ext(true) }
            .client
            .ok()?;
        client.into_helper_thread(received).ok()
    });
}

/// What the slots of this process hold.
struct State {
    /// Compilers running.
    running: usize,
    /// Whether no running compiler holds the token make gave this process.
    implicit_free: bool,
    /// Tokens taken from the jobserver that no compiler holds yet.
    spare: Vec<jobserver::Acquired>,
    /// Compilers waiting for a slot.
    waiting: usize,
}

/// The slots: their state, and the signal that one was freed or a token came.
struct Slots {
    state: Mutex<State>,
    changed: Condvar,
    limit: usize,
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| Slots {
        state: Mutex::new(State {
            running: 0,
            implicit_free: true,
            spare: Vec::new(),
            waiting: 0,
        }),
        changed: Condvar::new(),
        limit: std::thread::available_parallelism().map_or(2, usize::from),
    })
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A token the jobserver's helper thread read: kept for a waiting compiler, else given back.
/// A jobserver that cannot be read is no error (the waiting compiler asks again).
fn received(token: io::Result<jobserver::Acquired>) {
    let slots = slots();
    let mut state = slots.lock();
    if let Ok(token) = token {
        if state.waiting > 0 {
            state.spare.push(token);
        }
    }
    slots.changed.notify_all();
}

/// Runs the compiler `command` to its end, its output collected, once a slot is free; counted
/// in [`crate::compiler_runs`].
pub(crate) fn output(command: &mut Command) -> io::Result<Output> {
    crate::compile::count_run();
    let _slot = Slot::take();
    command.output()
}

/// The job token a running compiler holds.
enum Token {
    /// No jobserver: the cores alone bound the run.
    Unbounded,
    /// The token make gave this process.
    Implicit,
    /// One taken from the jobserver, given back when dropped.
    Taken(jobserver::Acquired),
}

/// One running compiler's slot, given back when dropped.
struct Slot {
    token: Option<Token>,
}

impl Slot {
    /// Waits until fewer compilers than cores run and a token is free (the implicit one, or one
    /// from the jobserver, asked for once per wait).
    fn take() -> Slot {
        let slots = slots();
        let helper = JOBSERVER.get().and_then(Option::as_ref);
        let mut state = slots.lock();
        let mut asked = false;
        loop {
            if state.running < slots.limit {
                let token = match helper {
                    None => Some(Token::Unbounded),
                    Some(_) if state.implicit_free => {
                        state.implicit_free = false;
                        Some(Token::Implicit)
                    }
                    Some(_) => state.spare.pop().map(Token::Taken),
                };
                if let Some(token) = token {
                    state.running += 1;
                    return Slot { token: Some(token) };
                }
                if let (Some(helper), false) = (helper, asked) {
                    helper.request_token();
                    asked = true;
                }
            }
            state.waiting += 1;
            state = slots.changed.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiting -= 1;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let slots = slots();
        let mut state = slots.lock();
        state.running = state.running.saturating_sub(1);
        match self.token.take() {
            Some(Token::Implicit) => state.implicit_free = true,
            // Handed to a waiting compiler, else given back to make.
            Some(Token::Taken(token)) if state.waiting > 0 => state.spare.push(token),
            _ => {}
        }
        // A token nobody waits for any more goes back to make.
        if state.waiting == 0 {
            state.spare.clear();
        }
        slots.changed.notify_all();
    }
}
