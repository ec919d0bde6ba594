//! Shell completions and the man page, generated from the clap definitions so they can never
//! drift from the real command line (a test compares them with the committed copies).

/// Shell completions for `shell`.
pub fn completions(shell: clap_complete::Shell, mut cmd: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "opensyncd", &mut out);
    out
}

/// The man page (roff).
pub fn man_page(cmd: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    // Rendering into a Vec cannot fail.
    let _ = clap_mangen::Man::new(cmd).render(&mut out);
    out
}
