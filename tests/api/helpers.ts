/**
 * Test fixtures of the api: a real dataplane protocol peer, an in-process api on a free port,
 * and promise wrappers over a grpc-js client.
 *
 * The peer ({@link startPeerDataplane}) speaks the real control protocol (`daemon/ipc.ts`,
 * dataplane role) and, like the real dataplane, makes each vNIC's socket path accept
 * connections before it answers UpsertNic. It stands in for the dataplane process until the
 * end-to-end tests run against the whole daemon.
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { until } from "../helpers/daemon.ts";
import { sleep } from "../helpers/wait.ts";
import { Channel, RemoteError } from "../../daemon/ipc.ts";
import type {
  DesiredNic,
  NicCounters,
  NicStatus,
  Request,
  Response,
} from "../../daemon/protocol.ts";
import { configureLogging, createLogger } from "../../daemon/log.ts";
import { DataplaneLink } from "../../api/dataplane_link.ts";
import { ApiServer, nicSocketPath } from "../../api/server.ts";
import { Store } from "../../api/store.ts";
import { loadContract } from "../../api/proto.ts";
import type { DiagnosticsMethods, NetServiceMethods } from "../../api/proto_types.ts";

/** A dataplane stand-in speaking the real protocol. */
export interface PeerDataplane extends AsyncDisposable {
  path: string;
  /** vNIC ids whose socket is listening. */
  sockets(): string[];
  /** Requests received, by type, in order. */
  requests: Request[];
  /** Makes the next UpsertNic fail with this failure code. */
  failNextUpsertNic(code: "invalid" | "failed"): void;
  /** Sets what GetNicCounters answers for a vNIC (the peer has no traffic of its own). */
  setCounters(id: string, counters: NicCounters): void;
  /** Sends a state report as the real dataplane does when a VMM connects. */
  report(status: NicStatus): void;
  close(): Promise<void>;
}

/** Starts a {@link PeerDataplane} on `<dir>/dataplane.sock`. */
export function startPeerDataplane(dir: string): PeerDataplane {
  const path = `${dir}/dataplane.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const sockets = new Map<string, Deno.Listener>();
  const requests: Request[] = [];
  const counters = new Map<string, NicCounters>();
  let failNext: "invalid" | "failed" | null = null;
  let api: Channel | null = null;
  const open = (nic: DesiredNic) => {
    if (sockets.has(nic.id)) return;
    sockets.set(nic.id, Deno.listen({ transport: "unix", path: nic.socketPath }));
  };
  const remove = (id: string) => {
    const l = sockets.get(id);
    if (!l) return;
    sockets.delete(id);
    l.close();
    try {
      Deno.removeSync(l.addr.transport === "unix" ? l.addr.path : "");
    } catch {
      // Deno may have unlinked it with the listener.
    }
  };
  const handle = (req: Request): Promise<Response> => {
    requests.push(req);
    switch (req.type) {
      case "SyncState": {
        const want = new Set(req.nics.map((n) => n.id));
        for (const id of [...sockets.keys()]) if (!want.has(id)) remove(id);
        for (const n of req.nics) open(n);
        return Promise.resolve({
          type: "StateSynced",
          nics: req.nics.map((n) => ({ id: n.id, state: "CREATED" as const })),
        });
      }
      case "UpsertNic": {
        if (failNext) {
          const code = failNext;
          failNext = null;
          return Promise.reject(new RemoteError(code, `socket ${req.nic.socketPath}: refused`));
        }
        open(req.nic);
        return Promise.resolve({ type: "NicReady", status: { id: req.nic.id, state: "CREATED" } });
      }
      case "RemoveNic":
        remove(req.id);
        return Promise.resolve({ type: "Done" });
      case "UpsertNetwork":
      case "RemoveNetwork":
        return Promise.resolve({ type: "Done" });
      case "GetNicCounters":
        // Like the real dataplane: only a vNIC it runs has counters.
        if (!sockets.has(req.id)) {
          return Promise.reject(new RemoteError("not_found", `no vNIC ${req.id} in the dataplane`));
        }
        return Promise.resolve({ type: "Counters", counters: counters.get(req.id) ?? {} });
      case "Ping":
        return Promise.resolve({ type: "Pong", pid: Deno.pid, uptimeMs: 0 });
      case "InjectFault":
        return Promise.reject(new RemoteError("invalid", "the stand-in has no actors"));
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      api?.close("replaced");
      api = await Channel.open(conn, { role: "dataplane", onRequest: handle });
    }
  })().catch(() => {});
  const close = async () => {
    api?.close("peer stopping");
    try {
      listener.close();
    } catch {
      // Closed already.
    }
    await accepting;
    for (const id of [...sockets.keys()]) remove(id);
  };
  return {
    path,
    sockets: () => [...sockets.keys()],
    requests,
    failNextUpsertNic: (code) => (failNext = code),
    setCounters: (id, c) => counters.set(id, c),
    report: (status) => api?.emit({ type: "NicStateChanged", status }),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** An in-process api with a real store, link and peer dataplane. */
export interface TestApi extends AsyncDisposable {
  dir: string;
  socketDir: string;
  target: string;
  store: Store;
  api: ApiServer;
  link: DataplaneLink;
  dataplane: PeerDataplane;
  client: NetClient;
}

/** Starts {@link TestApi}; logs are silenced unless `MVIRT_NET_TEST_LOG` is set. */
export async function startTestApi(
  opts: { watchQueueLimit?: number; dataplane?: boolean } = {},
): Promise<TestApi> {
  if (!Deno.env.get("MVIRT_NET_TEST_LOG")) configureLogging({ sink: () => {} });
  const dir = await Deno.makeTempDir({ prefix: "mvirt-net-api-test-" });
  const socketDir = `${dir}/sockets`;
  await Deno.mkdir(socketDir);
  const dataplane = startPeerDataplane(dir);
  const store = Store.open(`${dir}/store.db`);
  const log = createLogger("api-test");
  let api: ApiServer | null = null;
  const link = new DataplaneLink({
    socketPath: dataplane.path,
    desiredState: () => store.desiredState((id) => nicSocketPath(socketDir, id), 1500),
    onNicStatus: (s) => api?.onNicStatus(s),
    log,
    retryMs: 20,
  });
  api = new ApiServer({
    store,
    link,
    log,
    socketDir,
    mtu: 1500,
    watchQueueLimit: opts.watchQueueLimit,
  });
  const port = await api.listen({ kind: "tcp", host: "127.0.0.1", port: 0 });
  link.start();
  await link.waitConnected(5000);
  const target = `127.0.0.1:${port}`;
  const client = connect(target);
  const server = api;
  const dispose = async () => {
    client.close();
    await server.close();
    await link.stop();
    await dataplane.close();
    store.close();
    await Deno.remove(dir, { recursive: true });
  };
  return {
    dir,
    socketDir,
    target,
    store,
    api: server,
    link,
    dataplane,
    client,
    [Symbol.asyncDispose]: dispose,
  };
}

type UnaryMethod = {
  [K in keyof NetServiceMethods]: NetServiceMethods[K]["responseStream"] extends false ? K
    : never;
}[keyof NetServiceMethods];

/** A promise-based NetService client. */
export interface NetClient {
  call<M extends UnaryMethod>(
    method: M,
    req: Partial<NetServiceMethods[M]["request"]>,
  ): Promise<NetServiceMethods[M]["response"]>;
  /** The gRPC error a call fails with; throws if it succeeds. */
  fail<M extends UnaryMethod>(
    method: M,
    req: Partial<NetServiceMethods[M]["request"]>,
  ): Promise<grpc.ServiceError>;
  /** The raw grpc-js client, for streams. */
  raw: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  close(): void;
}

/**
 * Runs a read (Get*, List*) until it does not fail with UNAVAILABLE, for at most `timeoutMs`,
 * as a production client should: the root restarts a crashed api (the node:http2 crashes of
 * Deno 2.9.6, docs/architecture.md), which can take seconds on a loaded machine, and a read cut
 * off by it is safe to repeat. Writes are not retried: whether they were committed is what a
 * test checks.
 */
export async function retryUnavailable<T>(read: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await read();
    } catch (e) {
      const code = (e as grpc.ServiceError).code;
      if (code !== grpc.status.UNAVAILABLE || performance.now() > end) throw e;
      await sleep(250);
    }
  }
}

/** Connects a {@link NetClient} to `target`. */
export function connect(target: string, options: grpc.ChannelOptions = {}): NetClient {
  const { NetService } = loadContract();
  const raw = new NetService(
    target,
    grpc.credentials.createInsecure(),
    options,
  ) as NetClient["raw"];
  const call: NetClient["call"] = (method, req) =>
    new Promise((resolve, reject) => {
      (raw[method] as (r: unknown, cb: (e: grpc.ServiceError | null, v: unknown) => void) => void)
        .call(raw, req, (e, v) => e ? reject(e) : resolve(v as never));
    });
  return {
    call,
    async fail(method, req) {
      try {
        const v = await call(method, req);
        throw new Error(`${method} succeeded unexpectedly: ${JSON.stringify(v)}`);
      } catch (e) {
        if ((e as grpc.ServiceError).code === undefined) throw e;
        return e as grpc.ServiceError;
      }
    },
    raw,
    close: () => raw.close(),
  };
}

/** Name of a gRPC status code. */
export function statusName(code: number): string {
  return grpc.status[code] ?? String(code);
}

/** A `grpc.health.v1` client ({@link healthClient}). */
export type HealthClient = grpc.Client & {
  Check(
    r: { service: string },
    o: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, v: { status: string }) => void,
  ): void;
};

/**
 * A health client. A test that goes on using the daemon after {@link serving} keeps one open and
 * passes it in, closing it only at its end: a Deno client that closes its connection right after
 * the daemon restored many vNICs crashes the api now and then (node:http2 of Deno 2.9.6).
 */
export function healthClient(target: string): HealthClient {
  const { Health } = loadContract();
  return new Health(target, grpc.credentials.createInsecure()) as unknown as HealthClient;
}

function check(h: HealthClient, service: string): Promise<string> {
  return new Promise<string>((resolve) =>
    h.Check(
      { service },
      { deadline: Date.now() + 2000 },
      (e, v) => resolve(e ? statusName(e.code) : v.status),
    )
  );
}

/** Health of `service` at `target` ("SERVING", "NOT_SERVING", or the error's status name). */
export async function health(target: string, service: string): Promise<string> {
  const h = healthClient(target);
  try {
    return await check(h, service);
  } finally {
    h.close();
  }
}

/**
 * Waits until the api reports the dataplane connected (vNICs can be created); on timeout the
 * error carries the end of `log`. With `keep`, polls over that client and leaves it open.
 */
export async function serving(
  target: string,
  log: () => string = () => "",
  keep?: HealthClient,
): Promise<void> {
  // One connection for all polls: every connection a Deno client closes is a small risk of
  // the node:http2 abort (api/http2_guard.ts).
  const h = keep ?? healthClient(target);
  try {
    await until(
      async () => await check(h, "mvirt.net.NetService") === "SERVING",
      20_000,
      "the api to serve with the dataplane connected",
      // Not faster: a Deno client that polls at 20 ms while the daemon starts its vNICs, then
      // closes, crashes the api now and then (node:http2 of Deno 2.9.6; measured 11 crashes in
      // 62 restarts of 64 vNICs at 20 ms, none in 14 at 100 ms).
      100,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- log (end) ---\n${log().slice(-3000)}`);
  } finally {
    if (!keep) h.close();
  }
}

/** A promise-based client of the `mvirt.net.diag.Diagnostics` service. */
export interface DiagClient {
  call<M extends keyof DiagnosticsMethods>(
    method: M,
    req: DiagnosticsMethods[M]["request"],
  ): Promise<DiagnosticsMethods[M]["response"]>;
  /** The gRPC error a call fails with; throws if it succeeds. */
  fail<M extends keyof DiagnosticsMethods>(
    method: M,
    req: DiagnosticsMethods[M]["request"],
  ): Promise<grpc.ServiceError>;
  close(): void;
}

/** Connects a {@link DiagClient} to `target`. */
export function connectDiag(target: string): DiagClient {
  const { Diagnostics } = loadContract();
  const raw = new Diagnostics(target, grpc.credentials.createInsecure()) as NetClient["raw"];
  const call: DiagClient["call"] = (method, req) =>
    new Promise((resolve, reject) => {
      (raw[method] as (r: unknown, cb: (e: grpc.ServiceError | null, v: unknown) => void) => void)
        .call(raw, req, (e, v) => e ? reject(e) : resolve(v as never));
    });
  return {
    call,
    async fail(method, req) {
      try {
        const v = await call(method, req);
        throw new Error(`${method} succeeded unexpectedly: ${JSON.stringify(v)}`);
      } catch (e) {
        if ((e as grpc.ServiceError).code === undefined) throw e;
        return e as grpc.ServiceError;
      }
    },
    close: () => raw.close(),
  };
}

/** Awaits a failed call and checks its status and that its message has each of `includes`. */
export async function expectStatus(
  p: Promise<grpc.ServiceError>,
  code: keyof typeof grpc.status,
  ...includes: string[]
): Promise<grpc.ServiceError> {
  const e = await p;
  if (statusName(e.code) !== code) {
    throw new Error(`expected ${code}, got ${statusName(e.code)}: ${e.details}`);
  }
  for (const s of includes) {
    if (!e.details.includes(s)) throw new Error(`"${e.details}" lacks "${s}"`);
  }
  return e;
}
