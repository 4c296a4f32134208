// Node stand-in for Moddable's "Resource" module: a resource is a file of the manifest's
// `resources`, read from flash. Here the "flash" is a directory: IOTLINK_RESOURCES if set,
// else certs/ under the working directory. Like the device, a missing resource throws a URIError
// ("Resource not found: name") from the constructor, and `exists` answers without throwing.
// The device's HostBuffer is read-only; an ArrayBuffer cannot be, so writes through a view are
// not caught here.
import { existsSync, readFileSync, statSync } from "node:fs";
import { isAbsolute, join, normalize, resolve, sep } from "node:path";

let configuredDirectory: string | undefined;

/** Points Resource at a directory (a runner option); undefined returns to the default. */
export function setResourceDirectory(directory: string | undefined): void {
  configuredDirectory = directory === undefined ? undefined : resolve(directory);
}

export function resourceDirectory(): string {
  return configuredDirectory ?? resolve(process.env.IOTLINK_RESOURCES ?? "certs");
}

// Resource names are flat names in the firmware archive; refuse anything that would escape the
// directory, so a name cannot read arbitrary host files.
function pathOf(name: string): string | undefined {
  if (name === "" || isAbsolute(name) || normalize(name).split(sep).includes("..")) return undefined;
  return join(resourceDirectory(), name);
}

function isFile(path: string | undefined): path is string {
  return path !== undefined && existsSync(path) && statSync(path).isFile();
}

export default class Resource extends ArrayBuffer {
  // slice() and other ArrayBuffer methods must build plain ArrayBuffers, not call this constructor.
  static get [Symbol.species](): ArrayBufferConstructor {
    return ArrayBuffer;
  }

  constructor(name: string) {
    const path = pathOf(String(name));
    if (!isFile(path)) throw new URIError(`Resource not found: ${String(name)}`);
    const bytes = readFileSync(path);
    super(bytes.byteLength);
    new Uint8Array(this).set(bytes);
  }

  static exists(name: string): boolean {
    return isFile(pathOf(String(name)));
  }

  /** `copy` = false asks the device for a view without copying; a copy behaves the same here. */
  override slice(begin?: number, end?: number, _copy?: boolean): ArrayBuffer {
    return super.slice(begin, end);
  }
}
