/**
 * Kernel routes of public networks: every public network's IPv4 subnet and IPv6 prefix is
 * routed to the TUN device, so the host kernel sends their traffic to us.
 *
 * {@link planRoutes} is pure: desired prefixes and the routes the kernel has in, the changes
 * out. {@link KernelRoutes} reads and changes the routes with iproute2 (`ip -j`). Our routes
 * carry their own protocol number ({@link ROUTE_PROTO}), so that reconciliation removes only
 * routes we added and never the kernel's own (such as the link-local route of the device).
 * @module
 */

/** The `proto` value of our routes (any unused number 5-255 works; 77 is ours). */
export const ROUTE_PROTO = 77;

/** A route as the kernel reports it. */
export interface KernelRoute {
  /** Destination prefix, e.g. `10.1.0.0/24` or `fd00:1::/64`. */
  dst: string;
  /** Routing protocol number (the kernel names some: `kernel`, `boot`, `static`). */
  proto: string | number;
}

/** What to change to reach the desired state. */
export interface RoutePlan {
  add: string[];
  remove: string[];
}

/** Writes a prefix the way `ip -j route` prints it (a host route without `/32` or `/128`). */
export function kernelForm(prefix: string): string {
  const [addr, len] = prefix.split("/");
  const full = addr.includes(":") ? "128" : "32";
  return len === undefined || len === full ? addr : `${addr}/${len}`;
}

/** Computes the routes to add and to remove. Both lists are sorted for stable logs. */
export function planRoutes(desired: Iterable<string>, actual: KernelRoute[]): RoutePlan {
  const want = new Set([...desired].map(kernelForm));
  const ours = actual.filter((r) => String(r.proto) === String(ROUTE_PROTO)).map((r) => r.dst);
  const have = new Set(ours);
  return {
    add: [...want].filter((p) => !have.has(p)).sort(),
    remove: [...have].filter((p) => !want.has(p)).sort(),
  };
}

/** Runs a command and returns its stdout; throws with its stderr on failure. */
export type Runner = (cmd: string, args: string[]) => Promise<string>;

/** Runs commands with `Deno.Command`. */
export const denoRunner: Runner = async (cmd, args) => {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${dec.decode(out.stderr).trim()}`);
  }
  return dec.decode(out.stdout);
};

/** The routes of one device, read and changed through iproute2. */
export class KernelRoutes {
  constructor(readonly device: string, private readonly run: Runner = denoRunner) {}

  /** Routes whose output device is ours, both families. */
  async list(): Promise<KernelRoute[]> {
    const out: KernelRoute[] = [];
    for (const family of ["-4", "-6"]) {
      const text = await this.run("ip", ["-j", family, "route", "show", "dev", this.device]);
      const rows = text.trim()
        ? JSON.parse(text) as Array<{ dst: string; protocol?: string | number }>
        : [];
      for (const r of rows) out.push({ dst: r.dst, proto: r.protocol ?? "" });
    }
    return out;
  }

  async add(prefix: string): Promise<void> {
    await this.run("ip", [
      "route",
      "replace",
      prefix,
      "dev",
      this.device,
      "proto",
      String(ROUTE_PROTO),
    ]);
  }

  async remove(prefix: string): Promise<void> {
    await this.run("ip", [
      "route",
      "del",
      prefix,
      "dev",
      this.device,
      "proto",
      String(ROUTE_PROTO),
    ]);
  }

  /** Brings the device's routes to exactly `desired`; returns what was changed. */
  async reconcile(desired: Iterable<string>): Promise<RoutePlan> {
    const plan = planRoutes(desired, await this.list());
    for (const p of plan.remove) await this.remove(p);
    for (const p of plan.add) await this.add(p);
    return plan;
  }
}
