class Opensyncd < Formula
  desc "Background daemon that syncs Claude Code, Codex CLI and OpenCode sessions to OpenSync"
  homepage "https://github.com/opensyncd/opensyncd"
  url "https://github.com/opensyncd/opensyncd/archive/refs/tags/v0.1.0.tar.gz"
  # Placeholder: fill in the real checksum on release
  # (`shasum -a 256 opensyncd-0.1.0.tar.gz` of the tag tarball).
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license "MIT"

  depends_on "rust" => :build

  def install
    system "cargo", "install", *std_cargo_args

    man1.install "packaging/man/opensyncd.1"
    bash_completion.install "packaging/completions/opensyncd.bash" => "opensyncd"
    zsh_completion.install "packaging/completions/_opensyncd"
    fish_completion.install "packaging/completions/opensyncd.fish"
  end

  service do
    run [opt_bin/"opensyncd", "run"]
    keep_alive crashed: true
    log_path var/"log/opensyncd.log"
    error_log_path var/"log/opensyncd.log"
    process_type :background
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/opensyncd --version")
  end
end
