/**
 * Network namespaces of the tests that give a daemon a TUN device: the daemon runs under
 * `unshare -n`, and the test reaches into its namespace by the daemon's PID.
 * @module
 */

/** Runs a command in the network namespace of process `pid`; output is stdout + stderr. */
export async function inNs(pid: number, ...cmd: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command("nsenter", {
    args: ["-t", String(pid), "-n", "--", ...cmd],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout) + dec.decode(o.stderr) };
}

/**
 * Gives the namespace of `pid` a "far side" behind the TUN: loopback up and a veth pair whose
 * end `v0` holds `address`/24, as a host on the kernel's side would.
 */
export async function addFarSide(pid: number, address: string): Promise<void> {
  for (
    const cmd of [
      ["ip", "link", "set", "lo", "up"],
      ["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
      ["ip", "addr", "add", `${address}/24`, "dev", "v0"],
      ["ip", "link", "set", "v0", "up"],
      ["ip", "link", "set", "v1", "up"],
    ]
  ) {
    const r = await inNs(pid, ...cmd);
    if (r.code !== 0) throw new Error(`${cmd.join(" ")}: ${r.out}`);
  }
}
