/**
 * A promise-based client of our gRPC API (`mvirt.net.NetService`, and the
 * `mvirt.net.diag.Diagnostics` counters) for the benchmarks: the contract comes from
 * api/proto.ts, the transport is grpc-js as in the CLI.
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { loadContract, NET_SERVICE_NAME } from "../../api/proto.ts";
import type { DiagnosticsMethods, NetServiceMethods } from "../../api/proto_types.ts";
import { sleep } from "./proc.ts";

/** Deadline of one unary call. */
const CALL_TIMEOUT_MS = 20_000;

type UnaryMethod = {
  [K in keyof NetServiceMethods]: NetServiceMethods[K]["responseStream"] extends false ? K
    : never;
}[keyof NetServiceMethods];

type RawClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/** One unary call on a raw grpc-js client, as a promise. */
function unary<T>(raw: RawClient, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = raw[method] as (
      r: unknown,
      o: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, v: unknown) => void,
    ) => void;
    fn.call(
      raw,
      req,
      { deadline: Date.now() + CALL_TIMEOUT_MS },
      (e, v) => e ? reject(new Error(`${method}: ${e.message}`)) : resolve(v as T),
    );
  });
}

/** A NetService client; one HTTP/2 connection, reconnected by grpc-js when needed. */
export class NetClient {
  #raw: RawClient;
  #diag: RawClient | null = null;
  readonly target: string;

  constructor(target: string) {
    this.target = target;
    const { NetService } = loadContract();
    this.#raw = new NetService(target, grpc.credentials.createInsecure()) as RawClient;
  }

  /** Calls a unary RPC. */
  call<M extends UnaryMethod>(
    method: M,
    req: Partial<NetServiceMethods[M]["request"]>,
  ): Promise<NetServiceMethods[M]["response"]> {
    return unary(this.#raw, method, req);
  }

  /** Calls a `Diagnostics` RPC (a second client, opened on first use, over the same target). */
  diag<M extends keyof DiagnosticsMethods>(
    method: M,
    req: DiagnosticsMethods[M]["request"],
  ): Promise<DiagnosticsMethods[M]["response"]> {
    const { Diagnostics } = loadContract();
    this.#diag ??= new Diagnostics(this.target, grpc.credentials.createInsecure()) as RawClient;
    return unary(this.#diag, method, req);
  }

  /** Closes the connection(s). */
  close(): void {
    this.#raw.close();
    this.#diag?.close();
  }
}

type HealthClient = grpc.Client & {
  Check(
    r: { service: string },
    o: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, v: { status: string }) => void,
  ): void;
};

/**
 * Waits until the api answers SERVING for the NetService, which it does only while the
 * dataplane is connected (vNICs can be created then).
 */
export async function waitServing(target: string, timeoutMs: number): Promise<void> {
  const { Health } = loadContract();
  const h = new Health(target, grpc.credentials.createInsecure()) as unknown as HealthClient;
  const end = performance.now() + timeoutMs;
  let last = "no answer";
  try {
    while (performance.now() < end) {
      last = await new Promise<string>((resolve) =>
        h.Check(
          { service: NET_SERVICE_NAME },
          { deadline: Date.now() + 2_000 },
          (e, v) => resolve(e ? `error ${grpc.status[e.code] ?? e.code}` : v.status),
        )
      );
      if (last === "SERVING") return;
      await sleep(50);
    }
  } finally {
    h.close();
  }
  throw new Error(`the api at ${target} did not serve within ${timeoutMs} ms (last: ${last})`);
}
