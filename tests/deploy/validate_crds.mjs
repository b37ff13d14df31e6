// Test helper: validate custom resources against the schemas that @kubernetes-models
// generated from the KEDA and Prometheus Operator CRDs.
//   node validate_crds.mjs NODE_MODULES_DIR < objects.json   ->  [{kind, name, error}]
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const packages = {
  "keda.sh/v1alpha1": "@kubernetes-models/keda/keda.sh/v1alpha1",
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
};
const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const obj of objects) {
  const dir = packages[obj.apiVersion];
  const name = obj.metadata?.name;
  if (!dir) {
    results.push({ kind: obj.kind, name, error: `no schema package for ${obj.apiVersion}` });
    continue;
  }
  const mod = await import(pathToFileURL(join(modules, dir, `${obj.kind}.js`)).href);
  try {
    new mod[obj.kind](obj).validate();
    results.push({ kind: obj.kind, name, error: null });
  } catch (err) {
    results.push({ kind: obj.kind, name, error: String(err.message ?? err) });
  }
}
process.stdout.write(JSON.stringify(results));
