/**
 * Daemon configuration: command-line flags with environment fallbacks.
 *
 * Parsing is strict: an unknown flag or a bad value is refused with a message that names it,
 * because a typo in a unit file must not silently start a daemon with other settings.
 *
 * @example
 * ```ts
 * const cfg = parseConfig(["--listen", "unix:/run/mvirt-net/api.sock"], {});
 * ```
 * @module
 */

import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "./log.ts";

/** Where the gRPC server listens. */
export type ListenAddress =
  | { kind: "tcp"; host: string; port: number }
  | { kind: "unix"; path: string };

/** The resolved configuration of the daemon. Paths are absolute. */
export interface Config {
  listen: ListenAddress;
  /** Directory of the vNICs' vhost-user sockets. */
  socketDir: string;
  /** Directory of the SQLite store and the api/dataplane control socket. */
  dataDir: string;
  tunName: string;
  tun: boolean;
  logLevel: LogLevel;
  logFormat: LogFormat;
  /** MTU given to networks (the API has no per-network MTU field). */
  mtu: number;
  /** Seconds between repairs of the TUN routes. */
  reconcileInterval: number;
  /** Group given to every socket the daemon offers to others (vNIC sockets, a `unix:` gRPC
   * socket), as a numeric GID; null keeps the daemon user's primary group. */
  socketGroup: number | null;
}

/** A configuration error: says which flag or variable and which value. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Default gRPC listen address: loopback only. */
export const DEFAULT_LISTEN = "[::1]:50054";
/** Linux's IFNAMSIZ less the terminating NUL. */
const MAX_IFNAME = 15;
const MIN_MTU = 1280;
const MAX_MTU = 9000;
/** The largest GID: (gid_t)-1 means "no change" to chown(2), so it is not a group. */
const MAX_GID = 0xffff_fffe;
/** Where group names are looked up. */
export const GROUP_FILE = "/etc/group";

interface FlagSpec {
  key: keyof Config;
  env: string;
  /** A boolean flag takes no value. */
  boolean?: boolean;
  help: string;
  default?: string;
}

const FLAGS: Record<string, FlagSpec> = {
  "--listen": {
    key: "listen",
    env: "MVIRT_NET_LISTEN",
    default: DEFAULT_LISTEN,
    help: "gRPC listen address: HOST:PORT, [V6]:PORT or unix:/path",
  },
  "--socket-dir": {
    key: "socketDir",
    env: "MVIRT_NET_SOCKET_DIR",
    default: ".run/sockets",
    help: "directory of the vNICs' vhost-user sockets",
  },
  "--data-dir": {
    key: "dataDir",
    env: "MVIRT_NET_DATA_DIR",
    default: ".data",
    help: "directory of the SQLite store and the internal control socket",
  },
  "--tun-name": {
    key: "tunName",
    env: "MVIRT_NET_TUN_NAME",
    default: "mvirt-net",
    help: "name of the TUN device of public networks",
  },
  "--no-tun": {
    key: "tun",
    env: "MVIRT_NET_NO_TUN",
    boolean: true,
    help: "do not create the TUN device (public networks reach nothing outside)",
  },
  "--log-level": {
    key: "logLevel",
    env: "MVIRT_NET_LOG_LEVEL",
    default: "info",
    help: `one of ${LOG_LEVELS.join(", ")}`,
  },
  "--log-format": {
    key: "logFormat",
    env: "MVIRT_NET_LOG_FORMAT",
    default: "text",
    help: `one of ${LOG_FORMATS.join(", ")}`,
  },
  "--mtu": {
    key: "mtu",
    env: "MVIRT_NET_MTU",
    default: "1500",
    help: `MTU of every network (${MIN_MTU}-${MAX_MTU})`,
  },
  "--reconcile-interval": {
    key: "reconcileInterval",
    env: "MVIRT_NET_RECONCILE_INTERVAL",
    default: "10",
    help: "seconds between repairs of the kernel routes of public networks",
  },
  "--socket-group": {
    key: "socketGroup",
    env: "MVIRT_NET_SOCKET_GROUP",
    default: "",
    help: "group (name or GID) owning the vNIC sockets and a unix: gRPC socket, mode 0660; " +
      "empty keeps the daemon user's group",
  },
};

/** The text of `--help`. */
export function usage(): string {
  const lines = ["Usage: mvirt-net [flags]", "", "Flags (environment variable in brackets):"];
  for (const [flag, spec] of Object.entries(FLAGS)) {
    const def = spec.default ? ` (default ${spec.default})` : "";
    lines.push(`  ${flag.padEnd(22)} ${spec.help}${def} [${spec.env}]`);
  }
  lines.push(`  ${"--help".padEnd(22)} print this text`);
  return lines.join("\n");
}

/** Parses `HOST:PORT`, `[V6]:PORT` or `unix:/path`. */
export function parseListen(value: string, source = "--listen"): ListenAddress {
  if (value.startsWith("unix:")) {
    const path = value.slice("unix:".length);
    if (!path.startsWith("/")) {
      throw new ConfigError(`${source}: unix socket path must be absolute, got "${value}"`);
    }
    return { kind: "unix", path };
  }
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(value) ?? /^([^:\[\]]+):(\d+)$/.exec(value);
  if (!m) {
    throw new ConfigError(
      `${source}: expected HOST:PORT, [IPV6]:PORT or unix:/path, got "${value}"`,
    );
  }
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`${source}: port must be 0-65535, got "${m[2]}"`);
  }
  return { kind: "tcp", host: m[1], port };
}

/** Formats a listen address the way {@link parseListen} reads it. */
export function formatListen(addr: ListenAddress): string {
  if (addr.kind === "unix") return `unix:${addr.path}`;
  return addr.host.includes(":") ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

function absolute(path: string, cwd: string): string {
  return path.startsWith("/") ? path : `${cwd.replace(/\/$/, "")}/${path}`;
}

function intIn(value: string, source: string, min: number, max: number): number {
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${source}: expected a whole number ${min}-${max}, got "${value}"`);
  }
  return n;
}

/**
 * Resolves a group name or a numeric GID to a GID. Names are looked up in `groupFile`
 * (`/etc/group` format); groups known only to NSS (LDAP, sssd) must be given by number.
 * Throws {@link ConfigError} naming `source` and the value.
 */
export function resolveGroup(value: string, source: string, groupFile = GROUP_FILE): number {
  if (/^\d+$/.test(value)) {
    const gid = Number(value);
    if (gid > MAX_GID) {
      throw new ConfigError(`${source}: a GID must be 0-${MAX_GID}, got "${value}"`);
    }
    return gid;
  }
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*\$?$/.test(value)) {
    throw new ConfigError(`${source}: expected a group name or a numeric GID, got "${value}"`);
  }
  let text: string;
  try {
    text = Deno.readTextFileSync(groupFile);
  } catch (e) {
    throw new ConfigError(
      `${source}: cannot read ${groupFile} to look up group "${value}" (${
        (e as Error).message
      }); give the GID instead`,
    );
  }
  for (const line of text.split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === value && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new ConfigError(
    `${source}: no group named "${value}" in ${groupFile}; create it or give a numeric GID`,
  );
}

function resolve(raw: Record<string, string>, cwd: string, groupFile: string): Config {
  const v = (k: keyof Config) => raw[k];
  const src = (k: keyof Config) => raw[`${k}:source`];
  const level = v("logLevel");
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError(
      `${src("logLevel")}: expected one of ${LOG_LEVELS.join(", ")}, got "${level}"`,
    );
  }
  const format = v("logFormat");
  if (!(LOG_FORMATS as readonly string[]).includes(format)) {
    throw new ConfigError(
      `${src("logFormat")}: expected one of ${LOG_FORMATS.join(", ")}, got "${format}"`,
    );
  }
  const tunName = v("tunName");
  if (tunName.length === 0 || tunName.length > MAX_IFNAME || !/^[A-Za-z0-9_.-]+$/.test(tunName)) {
    throw new ConfigError(
      `${
        src("tunName")
      }: an interface name of 1-${MAX_IFNAME} characters [A-Za-z0-9_.-], got "${tunName}"`,
    );
  }
  for (const k of ["socketDir", "dataDir"] as const) {
    if (v(k) === "") throw new ConfigError(`${src(k)}: must not be empty`);
  }
  return {
    listen: parseListen(v("listen"), src("listen")),
    socketDir: absolute(v("socketDir"), cwd),
    dataDir: absolute(v("dataDir"), cwd),
    tunName,
    tun: v("tun") !== "true",
    logLevel: level as LogLevel,
    logFormat: format as LogFormat,
    mtu: intIn(v("mtu"), src("mtu"), MIN_MTU, MAX_MTU),
    reconcileInterval: intIn(v("reconcileInterval"), src("reconcileInterval"), 1, 3600),
    socketGroup: v("socketGroup") === ""
      ? null
      : resolveGroup(v("socketGroup"), src("socketGroup"), groupFile),
  };
}

/** The outcome of reading the command line: run with a config, or print help. */
export type ParseResult = { help: true } | { help: false; config: Config };

/**
 * Reads flags, then environment variables, then defaults.
 * Throws {@link ConfigError} naming the offending flag or variable.
 */
export function parseArgs(
  args: string[],
  env: Record<string, string | undefined>,
  cwd = Deno.cwd(),
  groupFile = GROUP_FILE,
): ParseResult {
  const raw: Record<string, string> = {};
  for (const [flag, spec] of Object.entries(FLAGS)) {
    const fromEnv = env[spec.env];
    if (fromEnv !== undefined) {
      if (spec.boolean && !["1", "true", "0", "false"].includes(fromEnv)) {
        throw new ConfigError(`${spec.env}: expected 1, true, 0 or false, got "${fromEnv}"`);
      }
      raw[spec.key] = spec.boolean ? String(fromEnv === "1" || fromEnv === "true") : fromEnv;
      raw[`${spec.key}:source`] = spec.env;
    } else {
      raw[spec.key] = spec.boolean ? "false" : spec.default ?? "";
      raw[`${spec.key}:source`] = flag;
    }
  }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help" || arg === "-h") return { help: true };
    const eq = arg.indexOf("=");
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const spec = FLAGS[name];
    if (!spec) throw new ConfigError(`unknown flag "${name}" (see --help)`);
    if (spec.boolean) {
      if (eq >= 0) throw new ConfigError(`${name} takes no value, got "${arg}"`);
      raw[spec.key] = "true";
    } else {
      const value = eq >= 0 ? arg.slice(eq + 1) : args[++i];
      if (value === undefined) throw new ConfigError(`${name} needs a value`);
      raw[spec.key] = value;
    }
    raw[`${spec.key}:source`] = name;
  }
  return { help: false, config: resolve(raw, cwd, groupFile) };
}

/** Convenience wrapper over {@link parseArgs} that insists on a config. */
export function parseConfig(
  args: string[],
  env: Record<string, string | undefined>,
  cwd = Deno.cwd(),
  groupFile = GROUP_FILE,
): Config {
  const r = parseArgs(args, env, cwd, groupFile);
  if (r.help) throw new ConfigError("--help given");
  return r.config;
}

/** Path of the internal api/dataplane control socket. */
export function controlSocketPath(cfg: Config): string {
  return `${cfg.dataDir}/dataplane.sock`;
}

/** Path of the SQLite store. */
export function storePath(cfg: Config): string {
  return `${cfg.dataDir}/mvirt-net.db`;
}

/** The environment variable through which the root hands the resolved config to a child. */
export const CHILD_CONFIG_ENV = "MVIRT_NET_CHILD_CONFIG";

/** Reads the config a child process was started with. */
export function childConfig(): Config {
  const text = Deno.env.get(CHILD_CONFIG_ENV);
  if (!text) {
    throw new ConfigError(`${CHILD_CONFIG_ENV} is not set: start the daemon via daemon/main.ts`);
  }
  return JSON.parse(text) as Config;
}
