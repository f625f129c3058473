/**
 * The `mvirt-net` root process: reads the configuration, starts the dataplane and the api as
 * child processes with the least permissions each needs, restarts them when they die, and on
 * SIGTERM or SIGINT stops both and exits 0.
 *
 * The root loads no native code and speaks no HTTP/2, so neither a fault in the C shim nor the
 * node:http2 abort of Deno 2.9.6 can take it down (see docs/architecture.md).
 * @module
 */

import { CHILD_CONFIG_ENV, type Config, ConfigError, parseArgs, usage } from "./config.ts";
import { configureLogging, createLogger } from "./log.ts";
import { type ProcessLimits, type ProcessSpec, ProcessSupervisor } from "./process_supervisor.ts";
import { checkSocketGroup } from "./socket_access.ts";
import { bundleVnicActor, VNIC_BUNDLE_ENV } from "./bundle.ts";

const ROOT_DIR = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/**
 * V8 flags of the dataplane process (see `childSpecs`). `--expose-gc`: actors release deleted
 * vNICs' rings with explicit collections (actors/reclaim.ts). `--max-semi-space-size=1`: V8 grows
 * each isolate's young generation up to 8 MiB semi-spaces; an idle vNIC does not need that.
 * `--no-short-builtin-calls`: by default V8 maps its embedded builtins once more into every
 * isolate's code range (1.6 MiB resident per Worker, measured), for calls a few bytes shorter.
 * Both are measured in docs/performance-control.md. No heap limit: that would turn a large state
 * into a crash.
 */
const DATAPLANE_V8_FLAGS = ["--max-semi-space-size=1", "--no-short-builtin-calls", "--expose-gc"];
/** Exit code of a configuration error (as for a bad flag). */
const CONFIG_EXIT_CODE = 2;

/** Permission flags of each child, with the reason for each in docs and README. */
export function childSpecs(cfg: Config, vnicBundle: string | null = null): ProcessSpec[] {
  const env: Record<string, string> = {
    [CHILD_CONFIG_ENV]: JSON.stringify(cfg),
    MVIRT_NET_LOG_LEVEL: cfg.logLevel,
    MVIRT_NET_LOG_FORMAT: cfg.logFormat,
  };
  const common = ["run", "--no-prompt", `--config=${ROOT_DIR}/deno.json`];
  const dataplaneV8 = `--v8-flags=${DATAPLANE_V8_FLAGS.join(",")}`;
  const writeDirs = [cfg.dataDir, cfg.socketDir];
  if (cfg.listen.kind === "unix") writeDirs.push(dirOf(cfg.listen.path));
  return [
    {
      role: "dataplane",
      args: [
        ...common,
        dataplaneV8,
        "--allow-ffi",
        // Deno 2.9 asks for net permission to connect to a Unix socket: the dataplane probes
        // its control socket for a live twin before taking it over.
        "--allow-net",
        "--allow-read",
        `--allow-write=${[cfg.dataDir, cfg.socketDir].join(",")}`,
        "--allow-env",
        "--allow-run=ip",
        // Deno.umask() needs it (there is no narrower descriptor); --allow-ffi grants more.
        "--allow-sys",
        `${ROOT_DIR}/actors/dataplane.ts`,
      ],
      env: vnicBundle ? { ...env, [VNIC_BUNDLE_ENV]: vnicBundle } : env,
    },
    {
      role: "api",
      args: [
        ...common,
        "--allow-net",
        "--allow-read",
        `--allow-write=${writeDirs.join(",")}`,
        "--allow-env",
        "--allow-sys",
        `${ROOT_DIR}/api/main.ts`,
      ],
      env,
    },
  ];
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/** Runs the root until a signal stops it; returns the exit code. */
export async function runRoot(cfg: Config, limits?: Partial<ProcessLimits>): Promise<number> {
  configureLogging({ level: cfg.logLevel, format: cfg.logFormat });
  const log = createLogger("root");
  Deno.mkdirSync(cfg.dataDir, { recursive: true });
  Deno.mkdirSync(cfg.socketDir, { recursive: true });
  const groupProblem = checkSocketGroup(cfg.socketGroup, cfg.dataDir);
  if (groupProblem) {
    console.error(`mvirt-net: ${groupProblem}`);
    return CONFIG_EXIT_CODE;
  }
  const done = Promise.withResolvers<number>();
  const sup = new ProcessSupervisor({
    log,
    limits,
    onGiveUp: () => done.resolve(1),
    onStarted: () => writePids(cfg, sup),
  });
  const onSignal = (sig: Deno.Signal) => () => {
    log.info("signal received, shutting down", { signal: sig });
    done.resolve(0);
  };
  const handlers = (["SIGTERM", "SIGINT"] as const).map((sig) => {
    const fn = onSignal(sig);
    Deno.addSignalListener(sig, fn);
    return [sig, fn] as const;
  });
  log.info("mvirt-net starting", {
    pid: Deno.pid,
    listen: cfg.listen.kind === "unix"
      ? `unix:${cfg.listen.path}`
      : `${cfg.listen.host}:${cfg.listen.port}`,
    socketDir: cfg.socketDir,
    dataDir: cfg.dataDir,
    tun: cfg.tun ? cfg.tunName : "off",
  });
  const vnicBundle = await bundleVnicActor(cfg.dataDir, log);
  for (const spec of childSpecs(cfg, vnicBundle)) sup.start(spec);
  const code = await done.promise;
  await sup.shutdown();
  for (const [sig, fn] of handlers) Deno.removeSignalListener(sig, fn);
  try {
    Deno.removeSync(pidsPath(cfg));
  } catch {
    // Never written or already gone.
  }
  log.info("mvirt-net stopped", { code });
  return code;
}

/** Where the root records its own and its children's PIDs, for operators and tests. */
export function pidsPath(cfg: Config): string {
  return `${cfg.dataDir}/pids.json`;
}

function writePids(cfg: Config, sup: ProcessSupervisor): void {
  const tmp = `${pidsPath(cfg)}.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify({ root: Deno.pid, ...sup.pids() }) + "\n");
  Deno.renameSync(tmp, pidsPath(cfg));
}

if (import.meta.main) {
  let parsed;
  try {
    parsed = parseArgs(Deno.args, Deno.env.toObject());
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(`mvirt-net: ${e.message}`);
    Deno.exit(CONFIG_EXIT_CODE);
  }
  if (parsed.help) {
    console.log(usage());
    Deno.exit(0);
  }
  Deno.exit(await runRoot(parsed.config));
}
