//! The shell script a step runs: `sh -e` semantics, each command echoed
//! before it runs, so a log shows what failed without guessing.

pub fn step_script(commands: &[String]) -> String {
    let mut script = String::from("set -e\n");
    for cmd in commands {
        script.push_str("printf '+ %s\\n' ");
        script.push_str(&shell_quote(cmd));
        script.push('\n');
        script.push_str(cmd);
        script.push('\n');
    }
    script
}

/// Single-quotes `s` for POSIX sh.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_each_command_quoted() {
        let s = step_script(&["echo 'hi' > out.txt".into(), "make".into()]);
        assert_eq!(
            s,
            "set -e\nprintf '+ %s\\n' 'echo '\\''hi'\\'' > out.txt'\necho 'hi' > out.txt\nprintf '+ %s\\n' 'make'\nmake\n"
        );
    }
}
