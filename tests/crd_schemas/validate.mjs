// Validate our custom resources for tests/crd_validation.py: prometheus-operator's (PodMonitor,
// PrometheusRule, ServiceMonitor) and cert-manager's (Certificate).
//
// stdin:  a JSON array of manifests (with --serve: one array per line, answered line by line).
// stdout: {"problems": ["<Kind>/<name>: <message> (at <path>)", ...],
//          "checked": ["<Kind>/<name>", ...], "skipped": ["<apiVersion>/<Kind>/<name>", ...]}
//
// Two passes per object, because neither alone catches a typo:
// 1. The model's own validate() (@kubernetes-models/prometheus-operator and @kubernetes-models/cert-manager:
//    ajv code compiled from the projects' CRD schemas): types, enums, patterns, required fields. Those
//    schemas never set additionalProperties, so a misspelled field passes it silently.
// 2. Unknown fields: walk the object against the package's TypeScript declarations (generated from
//    the same Go types, and the only uncompiled form of the schema the package ships) and report
//    every key no declared property matches. Maps ({[key: string]: T}) and property-less types
//    (free-form JSON) accept any key.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import ts from "typescript";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { Certificate } from "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate";

// apiVersion -> the npm package that models it and its kinds; a package keeps each kind's declarations
// in <apiVersion>/<Kind>.d.ts.
const APIS = {
  "monitoring.coreos.com/v1": {
    packageName: "@kubernetes-models/prometheus-operator", models: { PodMonitor, PrometheusRule, ServiceMonitor },
  },
  "cert-manager.io/v1": { packageName: "@kubernetes-models/cert-manager", models: { Certificate } },
};

const require = createRequire(import.meta.url);
const declarations = Object.entries(APIS).flatMap(([apiVersion, { packageName, models }]) => {
  const packageDir = dirname(require.resolve(`${packageName}/package.json`));
  return Object.keys(models).map((kind) => ({ apiVersion, kind, file: join(packageDir, apiVersion, `${kind}.d.ts`) }));
});

function ref(manifest) {
  return `${manifest?.kind}/${manifest?.metadata?.name ?? "<unnamed>"}`;
}

function at(pointer) {
  return pointer ? pointer.replace(/^\//, "") : "top level";
}

function schemaProblems(Model, manifest) {
  try {
    new Model(manifest).validate();
    return [];
  } catch (error) {
    if (!Array.isArray(error?.errors)) return [`${ref(manifest)}: ${error?.message ?? error} (at top level)`];
    const lines = error.errors.map((e) => {
      const message = e.keyword === "required" ? `missing required field "${e.params.missingProperty}"` : e.message;
      return `${ref(manifest)}: ${message} (at ${at(e.instancePath)})`;
    });
    return [...new Set(lines)]; // ajv reports some errors twice (once per $ref level)
  }
}

let checker;
const rootTypes = new Map();

function rootType(apiVersion, kind) {
  if (!checker) {
    const program = ts.createProgram(declarations.map((d) => d.file), {
      strict: true, noEmit: true, skipLibCheck: true, types: [], lib: ["lib.es5.d.ts"],
      module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
    });
    checker = program.getTypeChecker();
    for (const d of declarations) {
      const source = program.getSourceFile(d.file);
      const symbol = checker.getSymbolAtLocation(source)?.exports?.get(`I${d.kind}`);
      if (!symbol) throw new Error(`interface I${d.kind} not found in ${d.file}`);
      rootTypes.set(`${d.apiVersion}/${d.kind}`, checker.getDeclaredTypeOfSymbol(symbol));
    }
  }
  return rootTypes.get(`${apiVersion}/${kind}`);
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// Unknown keys in `value` (with their JSON pointer) against declared type `type`.
function unknownFields(value, type, pointer) {
  if (value === null || value === undefined) return [];
  type = checker.getNonNullableType(type);
  if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return [];
  if (type.isUnion()) {
    // e.g. IntOrString, or an object-or-array alternative: the member that fits best wins.
    let best = null;
    for (const member of type.types) {
      const found = unknownFields(value, member, pointer);
      if (best === null || found.length < best.length) best = found;
      if (found.length === 0) break;
    }
    return best ?? [];
  }
  if (Array.isArray(value)) {
    if (!checker.isArrayType(type) && !checker.isTupleType(type)) return [];
    const element = checker.getTypeArguments(type)[0];
    return value.flatMap((item, i) => unknownFields(item, element, `${pointer}/${i}`));
  }
  if (!isPlainObject(value) || !(type.flags & ts.TypeFlags.Object)) return [];
  const mapOf = checker.getIndexTypeOfType(type, ts.IndexKind.String);
  const properties = new Map(checker.getPropertiesOfType(type).map((p) => [p.getName(), p]));
  if (!mapOf && properties.size === 0) return []; // free-form object
  return Object.entries(value).flatMap(([key, child]) => {
    const path = `${pointer}/${key}`;
    const property = properties.get(key);
    if (property) return unknownFields(child, checker.getTypeOfSymbol(property), path);
    if (mapOf) return unknownFields(child, mapOf, path);
    return [{ key, pointer: path }];
  });
}

function fieldProblems(manifest) {
  return unknownFields(manifest, rootType(manifest.apiVersion, manifest.kind), "").map(
    ({ key, pointer }) => `${ref(manifest)}: unknown field "${key}" (at ${at(pointer)})`,
  );
}

function validateAll(manifests) {
  const result = { problems: [], checked: [], skipped: [] };
  for (const manifest of manifests) {
    const models = Object.hasOwn(APIS, manifest?.apiVersion) ? APIS[manifest.apiVersion].models : {};
    const Model = Object.hasOwn(models, manifest?.kind) ? models[manifest.kind] : undefined;
    if (!Model) {
      result.skipped.push(`${manifest?.apiVersion}/${ref(manifest)}`);
      continue;
    }
    result.checked.push(ref(manifest));
    result.problems.push(...schemaProblems(Model, manifest), ...fieldProblems(manifest));
  }
  return result;
}

function answer(text) {
  const manifests = JSON.parse(text);
  if (!Array.isArray(manifests)) throw new Error("input must be a JSON array of manifests");
  return JSON.stringify(validateAll(manifests)) + "\n";
}

if (process.argv.includes("--serve")) {
  // One JSON array per line in, one result per line out, until stdin closes: the TypeScript program is
  // built once per process (about 3 s) instead of once per call. A bad line answers {"error": ...}.
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    try {
      process.stdout.write(answer(line));
    } catch (error) {
      process.stdout.write(JSON.stringify({ error: String(error?.message ?? error) }) + "\n");
    }
  }
} else {
  try {
    process.stdout.write(answer(readFileSync(0, "utf8")));
  } catch (error) {
    process.stderr.write(`validate.mjs: ${error?.message ?? error}\n`);
    process.exit(2);
  }
}
