/**
 * A promise-based client of our gRPC API (`mvirt.net.NetService`) for the benchmarks: the
 * contract comes from api/proto.ts, the transport is grpc-js as in the CLI.
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { loadContract, NET_SERVICE_NAME } from "../../api/proto.ts";
import type { NetServiceMethods } from "../../api/proto_types.ts";
import { sleep } from "./proc.ts";

/** Deadline of one unary call. */
const CALL_TIMEOUT_MS = 20_000;

type UnaryMethod = {
  [K in keyof NetServiceMethods]: NetServiceMethods[K]["responseStream"] extends false ? K
    : never;
}[keyof NetServiceMethods];

type RawClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/** A NetService client; one HTTP/2 connection, reconnected by grpc-js when needed. */
export class NetClient {
  #raw: RawClient;
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
    return new Promise((resolve, reject) => {
      const fn = this.#raw[method] as (
        r: unknown,
        o: grpc.CallOptions,
        cb: (e: grpc.ServiceError | null, v: unknown) => void,
      ) => void;
      fn.call(
        this.#raw,
        req,
        { deadline: Date.now() + CALL_TIMEOUT_MS },
        (e, v) => e ? reject(new Error(`${method}: ${e.message}`)) : resolve(v as never),
      );
    });
  }

  /** Closes the connection. */
  close(): void {
    this.#raw.close();
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
