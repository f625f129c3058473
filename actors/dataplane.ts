/**
 * The dataplane process: the actor supervisor and the control socket the api connects to.
 *
 * One api connection at a time; a new one replaces the old (the api restarted). Every
 * connection starts with a full SyncState from the api, to which the fleet converges.
 * SIGTERM, SIGINT, or the root going away (EOF on stdin) stop every actor, which removes the
 * vNIC sockets, and the process exits 0.
 * @module
 */

import { childConfig, type Config, controlSocketPath } from "../daemon/config.ts";
import { ensureSafeUmask, PRIVATE_SOCKET_MODE } from "../daemon/socket_access.ts";
import { configureLogging, createLogger, type Logger } from "../daemon/log.ts";
import { Channel, RemoteError } from "../daemon/ipc.ts";
import type { NicStatus, Request, Response } from "../daemon/protocol.ts";
import { parentGone } from "../daemon/process_supervisor.ts";
import { Fleet } from "./fleet.ts";
import { nativeDeviceControl } from "./vnic.ts";
import { libraryPath } from "../ffi/binding.ts";
import { VNIC_BUNDLE_ENV } from "../daemon/bundle.ts";
import { pathToFileURL } from "node:url";

const startedAt = performance.now();
/** Set to "1" (tests only) to let the control socket's InjectFault crash actors. */
const FAULT_INJECTION_ENV = "MVIRT_NET_FAULT_INJECTION";
/** What a `diagnostics` peer may ask: nothing that changes the desired state. */
const DIAGNOSTICS_REQUESTS = new Set<Request["type"]>(["GetNicCounters", "Ping", "InjectFault"]);

/**
 * Removes socket files in the socket directory that no wanted vNIC owns: left by a crash, or
 * by a vNIC deleted while the dataplane was down. A VMM must never attach to a dead socket.
 */
function sweepSockets(dir: string, wanted: Set<string>, log: Logger): void {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return;
  }
  for (const e of entries) {
    const path = `${dir}/${e.name}`;
    if (!e.name.endsWith(".sock") || wanted.has(path)) continue;
    try {
      Deno.removeSync(path);
      log.info("removed stale vNIC socket", { path });
    } catch (err) {
      log.warn("cannot remove stale vNIC socket", { path, error: err as Error });
    }
  }
}

async function handle(fleet: Fleet, cfg: Config, log: Logger, req: Request): Promise<Response> {
  switch (req.type) {
    case "SyncState": {
      const nics = await fleet.sync(req.networks, req.nics);
      sweepSockets(cfg.socketDir, new Set(req.nics.map((n) => n.socketPath)), log);
      return { type: "StateSynced", nics };
    }
    case "UpsertNetwork":
      await fleet.upsertNetwork(req.network);
      return { type: "Done" };
    case "RemoveNetwork":
      await fleet.removeNetwork(req.id);
      return { type: "Done" };
    case "UpsertNic":
      return { type: "NicReady", status: await fleet.upsertNic(req.nic) };
    case "RemoveNic":
      await fleet.removeNic(req.id);
      return { type: "Done" };
    case "GetNicCounters":
      return { type: "Counters", counters: await fleet.nicCounters(req.id) };
    case "Ping":
      return { type: "Pong", pid: Deno.pid, uptimeMs: Math.round(performance.now() - startedAt) };
    case "InjectFault":
      if (Deno.env.get(FAULT_INJECTION_ENV) !== "1") {
        throw new RemoteError(
          "invalid",
          `fault injection into ${req.actor} refused: the dataplane runs without ${FAULT_INJECTION_ENV}=1`,
        );
      }
      log.warn("injecting a fault", { actor: req.actor, reason: req.reason });
      await fleet.injectFault(req.actor, req.reason);
      return { type: "Done" };
    default:
      throw new RemoteError("invalid", `unknown request type ${(req as { type: string }).type}`);
  }
}

/** Refuses to start next to a live dataplane of the same data directory. */
async function claimControlSocket(path: string, log: Logger): Promise<void> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    throw new Error(`another mvirt-net dataplane is serving ${path}; stop it first`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.ConnectionRefused) {
      try {
        Deno.removeSync(path);
        log.debug("removed stale control socket", { path });
      } catch {
        // Not there: nothing to clean.
      }
      return;
    }
    throw e;
  }
}

/**
 * The vNIC actor's module: the root's bundle (daemon/bundle.ts) when it made one, else the
 * TypeScript module. The bundle lives in the data directory, so the shim's path, which the
 * binding finds relative to its own module, is passed to the Workers through the environment.
 */
function vnicModule(log: Logger): URL | undefined {
  const bundle = Deno.env.get(VNIC_BUNDLE_ENV);
  if (!bundle) return undefined;
  try {
    Deno.statSync(bundle);
  } catch (e) {
    log.warn("vNIC actor bundle missing; vNICs load the TypeScript modules", {
      path: bundle,
      error: (e as Error).message,
    });
    return undefined;
  }
  if (!Deno.env.get("MVIRT_NET_SHIM_PATH")) Deno.env.set("MVIRT_NET_SHIM_PATH", libraryPath());
  return pathToFileURL(bundle);
}

/** Runs the dataplane until told to stop. */
export async function runDataplane(cfg: Config): Promise<number> {
  configureLogging({ level: cfg.logLevel, format: cfg.logFormat });
  const log = createLogger("dataplane");
  // vNIC and control sockets must be born private (daemon/socket_access.ts).
  ensureSafeUmask();
  const path = controlSocketPath(cfg);
  await claimControlSocket(path, log);
  const done = Promise.withResolvers<number>();
  // Held in an object so that type narrowing does not forget the listener task assigns it.
  const link: { api: Channel | null } = { api: null };
  const fleet = new Fleet({
    log,
    vnicModule: vnicModule(log),
    devices: nativeDeviceControl(),
    onNicStatus: (status: NicStatus) => link.api?.emit({ type: "NicStateChanged", status }),
    onEscalate: (reason) => {
      log.error("dataplane supervisor gave up", { reason });
      done.resolve(1);
    },
    tun: cfg.tun ? { name: cfg.tunName, reconcileMs: cfg.reconcileInterval * 1000 } : undefined,
  });
  await fleet.startTun();
  const listener = Deno.listen({ transport: "unix", path });
  Deno.chmodSync(path, PRIVATE_SOCKET_MODE);
  log.info("dataplane ready", { pid: Deno.pid, control: path });
  (async () => {
    for await (const conn of listener) {
      try {
        // Requests may arrive with the peer's hello, before open() returns the channel.
        const opened = Promise.withResolvers<Channel>();
        const ch = await Channel.open(conn, {
          role: "dataplane",
          onRequest: async (req) => {
            const peer = (await opened.promise).peer;
            if (peer.role === "diagnostics" && !DIAGNOSTICS_REQUESTS.has(req.type)) {
              throw new RemoteError("invalid", `${req.type} is not for a diagnostics connection`);
            }
            return await handle(fleet, cfg, log, req);
          },
          onClose: (reason) => {
            if (link.api === ch) {
              link.api = null;
              log.info("api disconnected", { reason });
            }
          },
        });
        opened.resolve(ch);
        if (ch.peer.role === "diagnostics") {
          log.debug("diagnostics connected", { pid: ch.peer.pid });
          continue;
        }
        link.api?.close("replaced by a new api connection");
        link.api = ch;
        log.info("api connected", { apiPid: ch.peer.pid });
      } catch (e) {
        log.warn("control connection refused", { error: e as Error });
        try {
          conn.close();
        } catch {
          // Closed by the handshake failure already.
        }
      }
    }
  })().catch((e) => {
    if (!(e instanceof Deno.errors.BadResource)) log.error("control listener failed", { error: e });
  });
  const stop = (why: string) => () => {
    log.info("stopping", { why });
    done.resolve(0);
  };
  Deno.addSignalListener("SIGTERM", stop("SIGTERM"));
  Deno.addSignalListener("SIGINT", stop("SIGINT"));
  if (Deno.env.get("MVIRT_NET_WATCH_PARENT") !== "0") parentGone().then(stop("parent gone"));
  const code = await done.promise;
  listener.close();
  link.api?.close("dataplane stopping");
  await fleet.stop();
  try {
    Deno.removeSync(path);
  } catch {
    // Already gone.
  }
  log.info("dataplane stopped", { code });
  return code;
}

if (import.meta.main) {
  Deno.exit(await runDataplane(childConfig()));
}
