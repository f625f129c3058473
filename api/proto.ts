/**
 * The API contract loaded from `proto/` at run time, with the loader options every part of the
 * api (server, CLI, tests) shares.
 *
 * The options are chosen so that decoded messages are plain, complete objects whose shape the
 * generated types in `proto_types.ts` describe exactly:
 * - `keepCase`: field names stay as in the contract (`ipv4_subnet`), so code, `--json` output
 *   and other clients all spell them the same way;
 * - `longs: Number`: the only 64-bit field is an event timestamp in milliseconds, far below
 *   2^53;
 * - `enums: String`: enum values read as their names (`NIC_STATE_CREATED`);
 * - `defaults: true`: absent scalars and lists read as "", false, 0 and [], so proto3's "unset
 *   is the default" needs no `??` anywhere;
 * - `oneofs: true`: a oneof's name tells which member was sent (`identifier: "name"`), which
 *   is the only way to tell "name sent and empty" from "nothing sent".
 *
 * @example
 * ```ts
 * const { NetService } = loadContract();
 * ```
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

/** Directory of the `.proto` files. */
export const PROTO_DIR: string = new URL("../proto/", import.meta.url).pathname;
/** The contract files, relative to {@link PROTO_DIR}. */
export const PROTO_FILES: readonly string[] = [
  "mvirt_net.proto",
  "health.proto",
  "diagnostics.proto",
];

/** Loader options; see the module documentation for why each is set. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

/** Fully qualified name of the main service. */
export const NET_SERVICE_NAME = "mvirt.net.NetService";
/** Fully qualified name of the diagnostics service (counters; not part of the contract). */
export const DIAG_SERVICE_NAME = "mvirt.net.diag.Diagnostics";
/** Fully qualified name of the health service. */
export const HEALTH_SERVICE_NAME = "grpc.health.v1.Health";

/** The loaded contract: the package definition (for reflection) and the services. */
export interface Contract {
  packageDefinition: protoLoader.PackageDefinition;
  NetService: grpc.ServiceClientConstructor;
  Health: grpc.ServiceClientConstructor;
  Diagnostics: grpc.ServiceClientConstructor;
}

let cached: Contract | null = null;

/** Loads (once per process) and returns the contract. */
export function loadContract(): Contract {
  if (cached) return cached;
  // Absolute paths: the loader's include-path lookup calls fs.accessSync, which under Deno
  // needs --allow-sys (it reads the uid), and the CLI runs without it.
  const files = PROTO_FILES.map((f) => `${PROTO_DIR}${f}`);
  const packageDefinition = protoLoader.loadSync(files, LOADER_OPTIONS);
  const root = grpc.loadPackageDefinition(packageDefinition);
  const net = (root.mvirt as grpc.GrpcObject).net as grpc.GrpcObject;
  const health = ((root.grpc as grpc.GrpcObject).health as grpc.GrpcObject).v1 as grpc.GrpcObject;
  const diag = net.diag as grpc.GrpcObject;
  cached = {
    packageDefinition,
    NetService: net.NetService as grpc.ServiceClientConstructor,
    Health: health.Health as grpc.ServiceClientConstructor,
    Diagnostics: diag.Diagnostics as grpc.ServiceClientConstructor,
  };
  return cached;
}
