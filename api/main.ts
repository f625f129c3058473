/**
 * The api process: opens the store, connects to the dataplane, serves gRPC.
 *
 * Started by the root (`daemon/main.ts`) with the configuration in its environment. It exits 0
 * on SIGTERM or SIGINT, and also when its stdin reaches EOF: only the root holds the other end
 * of that pipe, so EOF means the root is gone and this process must not linger.
 *
 * Run alone (for development) with the configuration in `MVIRT_NET_CHILD_CONFIG`, or with the
 * daemon's own flags: `deno run --allow-net --allow-read --allow-write --allow-env --allow-sys
 * api/main.ts --listen=127.0.0.1:50099 --data-dir=/tmp/d --socket-dir=/tmp/s`.
 * @module
 */

import {
  CHILD_CONFIG_ENV,
  childConfig,
  type Config,
  ConfigError,
  controlSocketPath,
  formatListen,
  parseConfig,
  storePath,
} from "../daemon/config.ts";
import { configureLogging, createLogger } from "../daemon/log.ts";
import { parentGone } from "../daemon/process_supervisor.ts";
import { DataplaneLink } from "./dataplane_link.ts";
import { ApiServer, nicSocketPath } from "./server.ts";
import { Store } from "./store.ts";

/** Options of {@link runApi} beyond the configuration. */
export interface RunApiOptions {
  /** Resolves when the api should stop (in addition to SIGTERM/SIGINT). */
  stop?: Promise<unknown>;
}

/** Runs the api until a signal, `opts.stop` or stdin EOF; returns the exit code. */
export async function runApi(cfg: Config, opts: RunApiOptions = {}): Promise<number> {
  configureLogging({ level: cfg.logLevel, format: cfg.logFormat });
  const log = createLogger("api");
  let store: Store;
  try {
    Deno.mkdirSync(cfg.dataDir, { recursive: true });
    store = Store.open(storePath(cfg));
  } catch (e) {
    log.error("cannot open the store", { path: storePath(cfg), error: e as Error });
    return 1;
  }
  const purged = store.purgePending("api");
  if (purged.length > 0) log.warn("removed vNICs whose creation a restart interrupted", { purged });
  let api: ApiServer | null = null;
  const link = new DataplaneLink({
    socketPath: controlSocketPath(cfg),
    desiredState: () => store.desiredState((id) => nicSocketPath(cfg.socketDir, id), cfg.mtu),
    onNicStatus: (status) => api?.onNicStatus(status),
    log: log.child("link"),
  });
  api = new ApiServer({ store, link, log, socketDir: cfg.socketDir, mtu: cfg.mtu });
  const done = Promise.withResolvers<string>();
  const onSignal = (sig: Deno.Signal) => () => done.resolve(sig);
  const handlers = (["SIGTERM", "SIGINT"] as const).map((sig) => {
    const fn = onSignal(sig);
    Deno.addSignalListener(sig, fn);
    return [sig, fn] as const;
  });
  opts.stop?.then(() => done.resolve("stop requested"));
  let code = 0;
  try {
    const port = await api.listen(cfg.listen);
    link.start();
    log.info("api serving", {
      pid: Deno.pid,
      listen: cfg.listen.kind === "tcp" && cfg.listen.port === 0
        ? formatListen({ ...cfg.listen, port })
        : formatListen(cfg.listen),
      store: storePath(cfg),
    });
    const why = await done.promise;
    log.info("api stopping", { why });
  } catch (e) {
    log.error("api failed", { error: e as Error });
    code = 1;
  } finally {
    for (const [sig, fn] of handlers) Deno.removeSignalListener(sig, fn);
    await api.close();
    await link.stop();
    store.close();
  }
  return code;
}

if (import.meta.main) {
  let cfg: Config;
  try {
    cfg = Deno.env.get(CHILD_CONFIG_ENV)
      ? childConfig()
      : parseConfig(Deno.args, Deno.env.toObject());
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(`mvirt-net api: ${e.message}`);
    Deno.exit(2);
  }
  // EOF on stdin: the root is gone. Standalone runs set MVIRT_NET_WATCH_PARENT=0.
  const stop = Deno.env.get("MVIRT_NET_WATCH_PARENT") === "0" ? undefined : parentGone();
  Deno.exit(await runApi(cfg, { stop }));
}
