// The globals XS gives every Moddable module that Node lacks. Import it once before the app (the
// desktop runner and tests do), or give it to esbuild's `inject` option, which then binds free
// `trace` references in the bundle to this export.
import { installTrace, trace } from "./trace.ts";

installTrace();

export { trace };
