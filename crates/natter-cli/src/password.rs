//! Reading passwords without putting them on the command line (where `ps`
//! and shell history would show them): from standard input with
//! `--password-stdin`, from `NATTER_PASSWORD`, or typed at a prompt on the
//! terminal with echo turned off.

use std::io::{BufRead, IsTerminal, Write};

use crate::exit::{CliResult, Failure};

/// Where the password comes from.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// Read the first line of standard input.
    pub stdin: bool,
    /// Ask twice at a prompt (new passwords).
    pub confirm: bool,
}

/// The password from the chosen source.
pub fn read(source: Source, prompt: &str) -> CliResult<String> {
    if source.stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let pw = line.trim_end_matches(['\n', '\r']).to_owned();
        if pw.is_empty() {
            return Err(Failure::invalid("no password on standard input"));
        }
        return Ok(pw);
    }
    if let Ok(pw) = std::env::var("NATTER_PASSWORD")
        && !pw.is_empty()
    {
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "no password given: use --password-stdin or NATTER_PASSWORD when not at a terminal",
        ));
    }
    let pw = prompt_hidden(prompt)?;
    if source.confirm {
        let again = prompt_hidden("Repeat the password: ")?;
        if again != pw {
            return Err(Failure::invalid("the passwords do not match"));
        }
    }
    Ok(pw)
}

/// Prompts on standard error and reads a line from the terminal without
/// echoing it.
fn prompt_hidden(prompt: &str) -> CliResult<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let _echo = EchoOff::new();
    let mut line = String::new();
    // the terminal echoes the newline itself (ECHONL)
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Turns terminal echo off on standard input until dropped.
struct EchoOff {
    #[cfg(unix)]
    saved: Option<libc::termios>,
}

impl EchoOff {
    fn new() -> Self {
        #[cfg(unix)]
        {
            // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own;
            // failure (not a terminal) leaves everything as it was.
            unsafe {
                let mut t: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(0, &mut t) != 0 {
                    return Self { saved: None };
                }
                let saved = t;
                t.c_lflag &= !libc::ECHO;
                t.c_lflag |= libc::ECHONL;
                if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                    return Self { saved: None };
                }
                Self { saved: Some(saved) }
            }
        }
        #[cfg(not(unix))]
        Self {}
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(t) = self.saved {
            // SAFETY: restores the attributes read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}
