/**
 * Generates `api/proto_types.ts`: the TypeScript shape of every message, enum and service of
 * `proto/`, as `@grpc/proto-loader` decodes them with `LOADER_OPTIONS` (api/proto.ts).
 *
 * It reads the binary FileDescriptorProtos the loader itself produced, so the types follow
 * exactly what the runtime parsed. (The loader's JSON descriptors are not used: they report
 * `oneofIndex: 0` for every field, which hides proto3 `optional` and real oneofs.)
 *
 * Usage: `scripts/deno run --allow-read --allow-write --allow-env --allow-run
 * scripts/gen_proto_types.ts [--check]` (env: grpc-js reads its settings; run: `deno fmt`).
 * With `--check` it writes nothing and exits 1 when the file is out of date.
 * @module
 */

import { loadContract, LOADER_OPTIONS } from "../api/proto.ts";

const OUT = new URL("../api/proto_types.ts", import.meta.url).pathname;

// Field numbers of google/protobuf/descriptor.proto that the generator needs.
const FILE = { package: 2, messageType: 4, enumType: 5, service: 6 };
const MESSAGE = { name: 1, field: 2, nestedType: 3, enumType: 4, oneofDecl: 8 };
const FIELD = {
  name: 1,
  number: 3,
  label: 4,
  type: 5,
  typeName: 6,
  oneofIndex: 9,
  proto3Optional: 17,
};
const ENUM = { name: 1, value: 2 };
const ENUM_VALUE = { name: 1 };
const SERVICE = { name: 1, method: 2 };
const METHOD = { name: 1, inputType: 2, outputType: 3, clientStreaming: 5, serverStreaming: 6 };
const LABEL_REPEATED = 3;
// FieldDescriptorProto.Type values.
const TYPE_TS: Record<number, string> = {
  1: "number", // double
  2: "number", // float
  3: "number", // int64 (longs: Number)
  4: "number", // uint64
  5: "number", // int32
  8: "boolean",
  9: "string",
  12: "Uint8Array", // bytes
  13: "number", // uint32
  17: "number", // sint32
  18: "number", // sint64
};
const TYPE_MESSAGE = 11;
const TYPE_ENUM = 14;

type Fields = Map<number, Array<number | Uint8Array>>;

/** Decodes one protobuf message into field number -> values (varints or length-delimited). */
function decode(buf: Uint8Array): Fields {
  const out: Fields = new Map();
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = buf[i++];
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const num = Math.floor(key / 8);
    const wire = key & 7;
    let value: number | Uint8Array;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const len = varint();
      value = buf.subarray(i, i + len);
      i += len;
    } else if (wire === 1) {
      value = 0;
      i += 8;
    } else if (wire === 5) {
      value = 0;
      i += 4;
    } else throw new Error(`unsupported wire type ${wire} in descriptor`);
    if (!out.has(num)) out.set(num, []);
    out.get(num)!.push(value);
  }
  return out;
}

const text = new TextDecoder();
const str = (f: Fields, n: number): string => {
  const v = f.get(n)?.[0];
  return v instanceof Uint8Array ? text.decode(v) : "";
};
const num = (f: Fields, n: number): number | undefined => {
  const v = f.get(n)?.[0];
  return typeof v === "number" ? v : undefined;
};
const subs = (f: Fields, n: number): Fields[] =>
  (f.get(n) ?? []).map((v) => decode(v as Uint8Array));

/**
 * TypeScript name of a type reference: `.grpc.health.v1.X.Y` or (protobuf.js writes references
 * relative to the file's package) `X.Y` -> `X_Y`. Every package's names share one namespace;
 * {@link generate} refuses a clash.
 */
function tsName(ref: string, pkgOf: (fqn: string) => string): string {
  const local = ref.startsWith(".") ? ref.slice(pkgOf(ref).length + 2) : ref;
  return local.replaceAll(".", "_");
}

interface Emitted {
  name: string;
  body: string;
}

function emitEnum(e: Fields, prefix: string, out: Emitted[]): void {
  const name = prefix + str(e, ENUM.name);
  const values = subs(e, ENUM.value).map((v) => JSON.stringify(str(v, ENUM_VALUE.name)));
  out.push({ name, body: `export type ${name} =\n  | ${values.join("\n  | ")};\n` });
}

function emitMessage(
  m: Fields,
  prefix: string,
  pkgOf: (fqn: string) => string,
  out: Emitted[],
): void {
  const name = prefix + str(m, MESSAGE.name);
  const enums = subs(m, MESSAGE.enumType);
  const nested = subs(m, MESSAGE.nestedType);
  for (const e of enums) emitEnum(e, `${name}_`, out);
  for (const n of nested) emitMessage(n, `${name}_`, pkgOf, out);
  // A relative reference resolves innermost scope first, as in protoc.
  const inner = new Set([...enums, ...nested].map((t) => str(t, 1)));
  const resolve = (ref: string): string =>
    !ref.startsWith(".") && inner.has(ref.split(".")[0])
      ? `${name}_${tsName(ref, pkgOf)}`
      : tsName(ref, pkgOf);
  const oneofs = subs(m, MESSAGE.oneofDecl).map((o) => ({
    name: str(o, 1),
    members: [] as string[],
  }));
  const lines: string[] = [];
  for (const f of subs(m, MESSAGE.field)) {
    const fname = str(f, FIELD.name);
    const type = num(f, FIELD.type)!;
    let ts: string;
    if (type === TYPE_MESSAGE || type === TYPE_ENUM) {
      ts = resolve(str(f, FIELD.typeName));
    } else {
      ts = TYPE_TS[type];
      if (!ts) throw new Error(`${name}.${fname}: unsupported field type ${type}`);
    }
    const oneof = num(f, FIELD.oneofIndex);
    if (num(f, FIELD.label) === LABEL_REPEATED) lines.push(`  ${fname}: ${ts}[];`);
    else if (oneof !== undefined) {
      oneofs[oneof].members.push(fname);
      lines.push(`  ${fname}?: ${ts};`);
    } else if (type === TYPE_MESSAGE) lines.push(`  ${fname}: ${ts} | null;`);
    else lines.push(`  ${fname}: ${ts};`);
  }
  for (const o of oneofs) {
    const members = o.members.map((x) => JSON.stringify(x)).join(" | ");
    lines.push(`  /** Which member of oneof \`${o.name}\` is set. */`);
    lines.push(`  ${o.name}?: ${members};`);
  }
  out.push({
    name,
    body: lines.length === 0
      ? `export type ${name} = Record<string, never>;\n`
      : `export interface ${name} {\n${lines.join("\n")}\n}\n`,
  });
}

function emitService(s: Fields, pkgOf: (fqn: string) => string, out: Emitted[]): void {
  const name = str(s, SERVICE.name);
  const handlers: string[] = [];
  const methods: string[] = [];
  for (const m of subs(s, SERVICE.method)) {
    const mname = str(m, METHOD.name);
    const req = tsName(str(m, METHOD.inputType), pkgOf);
    const res = tsName(str(m, METHOD.outputType), pkgOf);
    if (num(m, METHOD.clientStreaming)) throw new Error(`${name}.${mname}: client streaming`);
    const streaming = num(m, METHOD.serverStreaming) === 1;
    handlers.push(
      streaming
        ? `  ${mname}: grpc.handleServerStreamingCall<${req}, ${res}>;`
        : `  ${mname}: grpc.handleUnaryCall<${req}, ${res}>;`,
    );
    methods.push(
      `  ${mname}: { request: ${req}; response: ${res}; responseStream: ${streaming} };`,
    );
  }
  out.push({
    name: `${name}Handlers`,
    body: `/** Server handlers of \`${name}\`. */\nexport interface ${name}Handlers ` +
      `extends grpc.UntypedServiceImplementation {\n${handlers.join("\n")}\n}\n`,
  });
  out.push({
    name: `${name}Methods`,
    body: `/** Request and response type of each method of \`${name}\`. */\n` +
      `export interface ${name}Methods {\n${methods.join("\n")}\n}\n`,
  });
}

/** Returns the text of `api/proto_types.ts`. */
export function generate(): string {
  const { packageDefinition } = loadContract();
  const first = Object.values(packageDefinition).find((d) => "fileDescriptorProtos" in d);
  if (!first || !("fileDescriptorProtos" in first)) throw new Error("no descriptors loaded");
  const files = (first.fileDescriptorProtos as Uint8Array[]).map(decode);
  const packages = files.map((f) => str(f, FILE.package)).sort((a, b) => b.length - a.length);
  const pkgOf = (fqn: string): string => {
    const p = packages.find((p) => fqn.startsWith(`.${p}.`));
    if (p === undefined) throw new Error(`type ${fqn} is in no loaded package`);
    return p;
  };
  const out: Emitted[] = [];
  for (const f of files) {
    for (const e of subs(f, FILE.enumType)) emitEnum(e, "", out);
    for (const m of subs(f, FILE.messageType)) emitMessage(m, "", pkgOf, out);
    for (const s of subs(f, FILE.service)) emitService(s, pkgOf, out);
  }
  const names = new Set<string>();
  for (const e of out) {
    if (names.has(e.name)) throw new Error(`two proto types map to the TypeScript name ${e.name}`);
    names.add(e.name);
  }
  const opts = Object.entries(LOADER_OPTIONS)
    .filter(([k]) => k !== "includeDirs")
    .map(([k, v]) => `${k}: ${typeof v === "function" ? v.name : v}`)
    .join(", ");
  return [
    "// Generated by scripts/gen_proto_types.ts from proto/*.proto. Do not edit: change the",
    "// .proto and run `scripts/deno run -A scripts/gen_proto_types.ts`.",
    `// Shapes as decoded by @grpc/proto-loader with { ${opts} }.`,
    "",
    'import type * as grpc from "@grpc/grpc-js";',
    "",
    ...out.map((e) => e.body),
  ].join("\n");
}

async function format(source: string): Promise<string> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["fmt", `--config=${new URL("../deno.json", import.meta.url).pathname}`, "--ext=ts", "-"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const w = cmd.stdin.getWriter();
  await w.write(new TextEncoder().encode(source));
  await w.close();
  const { code, stdout } = await cmd.output();
  if (code !== 0) throw new Error("deno fmt failed on the generated source");
  return text.decode(stdout);
}

if (import.meta.main) {
  const source = await format(generate());
  if (Deno.args.includes("--check")) {
    let current = "";
    try {
      current = await Deno.readTextFile(OUT);
    } catch {
      // Missing counts as out of date.
    }
    if (current !== source) {
      console.error(`${OUT} is out of date: run scripts/gen_proto_types.ts`);
      Deno.exit(1);
    }
  } else {
    await Deno.writeTextFile(OUT, source);
  }
}
