/**
 * Structured logging shared by every process and Worker of the daemon.
 *
 * Each line carries a timestamp, a level and the name of the actor (or process) that wrote it,
 * so interleaved output of many Workers stays readable. Output goes to stderr, which the root
 * process shares with its children, so one stream holds the whole daemon's log.
 *
 * @example
 * ```ts
 * const log = createLogger("dataplane/vnic:web-1");
 * log.info("driver up", { features: "0x1300" });
 * ```
 * @module
 */

/** Severity levels, most verbose first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** One of {@link LOG_LEVELS}. */
export type LogLevel = typeof LOG_LEVELS[number];
/** `text` for people, `json` (one object per line) for log collectors. */
export const LOG_FORMATS = ["text", "json"] as const;
/** One of {@link LOG_FORMATS}. */
export type LogFormat = typeof LOG_FORMATS[number];

/** Extra key/value pairs attached to a log line. */
export type LogFields = Record<string, unknown>;

/** A logger bound to one actor name. */
export interface Logger {
  readonly actor: string;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger for a child actor, named `parent/child`. */
  child(name: string): Logger;
}

interface LogSettings {
  level: LogLevel;
  format: LogFormat;
  sink: (line: string) => void;
}

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(line + "\n"));
  } catch {
    // A closed stderr (parent gone) must never take the data path down with it.
  }
}

const settings: LogSettings = {
  level: envLevel() ?? "info",
  format: envFormat() ?? "text",
  sink: writeStderr,
};

function envValue(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

function envLevel(): LogLevel | undefined {
  const v = envValue("MVIRT_NET_LOG_LEVEL");
  return (LOG_LEVELS as readonly string[]).includes(v ?? "") ? v as LogLevel : undefined;
}

function envFormat(): LogFormat | undefined {
  const v = envValue("MVIRT_NET_LOG_FORMAT");
  return (LOG_FORMATS as readonly string[]).includes(v ?? "") ? v as LogFormat : undefined;
}

/** Sets the process-wide (or Worker-wide) level, format and, for tests, the sink. */
export function configureLogging(opts: Partial<LogSettings>): void {
  Object.assign(settings, opts);
}

/** The settings in force, so that a parent can hand them to a Worker or child process. */
export function loggingSettings(): { level: LogLevel; format: LogFormat } {
  return { level: settings.level, format: settings.format };
}

function formatValue(v: unknown): string {
  if (typeof v === "string") return /[\s"=]/.test(v) || v === "" ? JSON.stringify(v) : v;
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === "bigint") return v.toString();
  return JSON.stringify(v) ?? String(v);
}

function emit(level: LogLevel, actor: string, msg: string, fields?: LogFields): void {
  if (LOG_LEVELS.indexOf(level) < LOG_LEVELS.indexOf(settings.level)) return;
  const ts = new Date().toISOString();
  if (settings.format === "json") {
    const obj: Record<string, unknown> = { ts, level, actor, msg };
    for (const [k, v] of Object.entries(fields ?? {})) {
      obj[k] = v instanceof Error ? v.message : typeof v === "bigint" ? v.toString() : v;
    }
    settings.sink(JSON.stringify(obj));
    return;
  }
  let line = `${ts} ${level.toUpperCase().padEnd(5)} [${actor}] ${msg}`;
  for (const [k, v] of Object.entries(fields ?? {})) line += ` ${k}=${formatValue(v)}`;
  settings.sink(line);
}

/** Creates a logger whose every line names `actor`. */
export function createLogger(actor: string): Logger {
  return {
    actor,
    debug: (msg, fields) => emit("debug", actor, msg, fields),
    info: (msg, fields) => emit("info", actor, msg, fields),
    warn: (msg, fields) => emit("warn", actor, msg, fields),
    error: (msg, fields) => emit("error", actor, msg, fields),
    child: (name) => createLogger(`${actor}/${name}`),
  };
}
