/**
 * Access to the daemon's sockets: every socket another user's process connects to (vNIC
 * sockets, a `unix:` gRPC socket) has mode 0660, the daemon user as owner and the
 * `--socket-group`; the internal control socket is the daemon user's alone; a bad group stops
 * the daemon with exit 2 naming the flag.
 */
import { assert, assertEquals } from "../assert.ts";
import { startDaemon } from "../helpers/daemon.ts";
import { connect, serving } from "../api/helpers.ts";
import { resolveGroup } from "../../daemon/config.ts";

/** Debian's `daemon` group exists on every install; the test runs as root, so it may chown. */
const GROUP = "daemon";
const PERM_BITS = 0o777;
const ROOT = new URL("../../", import.meta.url).pathname;

function access(path: string): { mode: number; uid: number | null; gid: number | null } {
  const st = Deno.statSync(path);
  return { mode: (st.mode ?? 0) & PERM_BITS, uid: st.uid, gid: st.gid };
}

function octal(n: number): string {
  return `0${n.toString(8)}`;
}

Deno.test("access: vNIC and gRPC sockets are 0660 with the socket group, control socket 0600", async () => {
  const gid = resolveGroup(GROUP, "test");
  const dir = await Deno.makeTempDir({ prefix: "mvirt-net-access-" });
  const grpcPath = `${dir}/api.sock`;
  try {
    await using d = await startDaemon({
      listen: `unix:${grpcPath}`,
      args: [`--socket-group=${GROUP}`],
    });
    const target = `unix:${grpcPath}`;
    await serving(target, d.log);
    const client = connect(target);
    try {
      await client.call("CreateNetwork", {
        name: "acc",
        ipv4_enabled: true,
        ipv4_subnet: "10.77.0.0/24",
      });
      const nics = [];
      for (const name of ["a", "b"]) {
        nics.push(await client.call("CreateNic", { network_id: "acc", name }));
      }
      const me = Deno.uid();
      const seen: Record<string, string> = {};
      for (const nic of nics) {
        const a = access(nic.socket_path);
        seen[nic.socket_path] = `${octal(a.mode)} ${a.uid}:${a.gid}`;
        assertEquals(a, { mode: 0o660, uid: me, gid }, `vNIC socket ${nic.socket_path}`);
      }
      const g = access(grpcPath);
      seen[grpcPath] = `${octal(g.mode)} ${g.uid}:${g.gid}`;
      assertEquals(g, { mode: 0o660, uid: me, gid }, "gRPC unix socket");
      const ctl = access(`${d.dataDir}/dataplane.sock`);
      seen["dataplane.sock"] = `${octal(ctl.mode)} ${ctl.uid}:${ctl.gid}`;
      assertEquals(ctl.mode, 0o600, "internal control socket: daemon user only");
      assertEquals(ctl.uid, me);
      // Every socket file the daemon made is one of the above.
      const socketsInDir = [...Deno.readDirSync(d.socketDir)].map((e) => e.name).sort();
      assertEquals(socketsInDir, nics.map((n) => n.socket_path.split("/").pop()!).sort());
      console.log("socket access:", JSON.stringify(seen));
    } finally {
      client.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

async function runDaemonExpectingFailure(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stderr: string }> {
  const dir = await Deno.makeTempDir({ prefix: "mvirt-net-access-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `--config=${ROOT}deno.json`,
        `${ROOT}daemon/main.ts`,
        `--data-dir=${dir}/data`,
        `--socket-dir=${dir}/sockets`,
        "--listen=127.0.0.1:0",
        "--no-tun",
        ...args,
      ],
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
    return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("access: an unknown socket group stops the daemon with exit 2 naming the flag", async () => {
  const flag = await runDaemonExpectingFailure(["--socket-group=no-such-group-mvnet"]);
  assertEquals(flag.code, 2, flag.stderr);
  assert(
    flag.stderr.includes('--socket-group: no group named "no-such-group-mvnet"'),
    flag.stderr,
  );
  const env = await runDaemonExpectingFailure([], { MVIRT_NET_SOCKET_GROUP: "bad group!" });
  assertEquals(env.code, 2, env.stderr);
  assert(
    env.stderr.includes(
      'MVIRT_NET_SOCKET_GROUP: expected a group name or a numeric GID, got "bad group!"',
    ),
    env.stderr,
  );
});

/** The unprivileged user the next test runs the daemon as (Debian's `nobody`/`nogroup`). */
const NOBODY = 65534;

Deno.test({
  name: "access: a socket group the daemon user is not in stops the daemon with exit 2",
  // Switching to another user needs root.
  ignore: Deno.uid() !== 0,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "mvirt-net-access-" });
    try {
      await Deno.chmod(dir, 0o777);
      const out = await new Deno.Command("setpriv", {
        args: [
          `--reuid=${NOBODY}`,
          `--regid=${NOBODY}`,
          "--clear-groups",
          "env",
          `HOME=${dir}`,
          `DENO_DIR=${dir}/deno`,
          Deno.execPath(),
          "run",
          "-A",
          `--config=${ROOT}deno.json`,
          `${ROOT}daemon/main.ts`,
          `--data-dir=${dir}/data`,
          `--socket-dir=${dir}/sockets`,
          "--listen=127.0.0.1:0",
          "--no-tun",
          `--socket-group=${GROUP}`,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(60_000),
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 2, stderr);
      assert(
        stderr.includes("--socket-group (MVIRT_NET_SOCKET_GROUP): the daemon user cannot give"),
        stderr,
      );
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
