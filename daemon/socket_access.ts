/**
 * Who may connect to the daemon's Unix sockets.
 *
 * Connecting to a Unix socket needs write permission on its file. Every socket that other
 * users' processes need (a vNIC's vhost-user socket for the VMM, a `unix:` gRPC socket for a
 * client) gets mode 0660, the daemon user as owner and the `--socket-group` as group. The
 * internal api/dataplane control socket stays 0600: only the daemon's own processes use it.
 *
 * The mode is set right after bind(2). That leaves no window in which a stranger can connect,
 * because each process that binds sockets first makes sure its umask clears the group and
 * other write bits ({@link ensureSafeUmask}), so a fresh socket file is connectable by its
 * owner only; the group is changed first and write permission is granted last
 * ({@link shareSocket}).
 *
 * @example
 * ```ts
 * shareSocket("/run/mvirt-net/sockets/nic-1.sock", 64055);
 * ```
 * @module
 */

import { CHILD_CONFIG_ENV, type Config } from "./config.ts";

/** Mode of a socket offered to the socket group: owner and group read and write. */
export const SHARED_SOCKET_MODE = 0o660;
/** Mode of the internal control socket: the daemon user only. */
export const PRIVATE_SOCKET_MODE = 0o600;
/** umask bits that keep a freshly bound socket unconnectable by group and others. */
const REQUIRED_UMASK_BITS = 0o022;
/** The flag and variable that name the group, for error messages. */
const SOURCE = "--socket-group (MVIRT_NET_SOCKET_GROUP)";

/**
 * Gives a freshly bound socket to `gid` (null: leave the group) and then mode 0660. The order
 * matters: granting group write before the chown would let the previous group connect.
 */
export function shareSocket(path: string, gid: number | null): void {
  if (gid !== null) Deno.chownSync(path, null, gid);
  Deno.chmodSync(path, SHARED_SOCKET_MODE);
}

/**
 * Adds the group and other write bits to the process umask when they are missing (never
 * clears any), so sockets are born private. Needs `--allow-sys`. Returns the umask in force.
 */
export function ensureSafeUmask(): number {
  const current = Deno.umask();
  if ((current & REQUIRED_UMASK_BITS) === REQUIRED_UMASK_BITS) return current;
  const safer = current | REQUIRED_UMASK_BITS;
  Deno.umask(safer);
  return safer;
}

/**
 * Proves at start-up that the daemon user may give files to the socket group (chown(2) to a
 * group needs membership unless the daemon runs as root), by doing it to a probe file in
 * `dir`. Returns an error message naming the flag, or null when all is well.
 */
export function checkSocketGroup(gid: number | null, dir: string): string | null {
  if (gid === null) return null;
  const probe = `${dir}/.socket-group-probe-${Deno.pid}`;
  try {
    Deno.writeTextFileSync(probe, "");
    Deno.chownSync(probe, null, gid);
    return null;
  } catch (e) {
    return `${SOURCE}: the daemon user cannot give sockets to gid ${gid}: ${
      (e as Error).message
    }; add the user to that group or run the daemon as root`;
  } finally {
    try {
      Deno.removeSync(probe);
    } catch {
      // Never created.
    }
  }
}

/** The socket group a child process (or a Worker in it) was started with; null outside the
 * daemon (tests that create devices directly). */
export function childSocketGroup(): number | null {
  const text = Deno.env.get(CHILD_CONFIG_ENV);
  if (!text) return null;
  return (JSON.parse(text) as Partial<Config>).socketGroup ?? null;
}
