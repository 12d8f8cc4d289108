#!/usr/bin/env node
// Validate KEDA and Karpenter objects offline against the schemas shipped in @kubernetes-models/keda and
// @kubernetes-models/karpenter (node_modules), which no Python package provides.
//
// Input on stdin: JSON - one object, an array of objects, or one object per line (JSON lines). YAML callers
// convert first (node_modules has no YAML parser, and JSON keeps this script dependency-free).
// Output on stdout: {"results": [{"index", "apiVersion", "kind", "name", "valid", "errors": [...]}]}.
// Exit status: 0 all valid, 1 some object invalid or of a kind with no schema here, 2 unreadable input.
//
// The models check types, required fields, enums and patterns; they do not reject unknown fields.

import { karpenterK8sAws, karpenterSh } from "@kubernetes-models/karpenter";
import { kedaSh } from "@kubernetes-models/keda";

const MODELS = {
  "keda.sh/v1alpha1": kedaSh.v1alpha1,
  "karpenter.sh/v1": karpenterSh.v1,
  "karpenter.sh/v1alpha1": karpenterSh.v1alpha1,
  "karpenter.k8s.aws/v1": karpenterK8sAws.v1,
};

function parseDocuments(text) {
  const trimmed = text.trim();
  if (trimmed === "") return [];
  try {
    const parsed = JSON.parse(trimmed);
    return Array.isArray(parsed) ? parsed : [parsed];
  } catch {
    // Not one JSON value: JSON lines.
    return trimmed
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line));
  }
}

function modelFor(doc) {
  const group = MODELS[doc?.apiVersion];
  const model = group?.[doc?.kind];
  // Only top-level kinds (those with an apiVersion of their own) are documents.
  return model && model.apiVersion === doc.apiVersion ? model : undefined;
}

function validate(doc, index) {
  const result = {
    index,
    apiVersion: doc?.apiVersion ?? null,
    kind: doc?.kind ?? null,
    name: doc?.metadata?.name ?? null,
    valid: true,
    errors: [],
  };
  const Model = modelFor(doc);
  if (!Model) {
    result.valid = false;
    result.errors.push(`no schema for ${result.apiVersion} ${result.kind}`);
    return result;
  }
  try {
    new Model(doc).validate();
  } catch (err) {
    result.valid = false;
    const details = Array.isArray(err?.errors) ? err.errors : [];
    if (details.length === 0) result.errors.push(String(err?.message ?? err));
    for (const e of details) result.errors.push(`${e.instancePath || "/"}: ${e.message}`);
  }
  return result;
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

async function main() {
  let docs;
  try {
    docs = parseDocuments(await readStdin());
  } catch (err) {
    process.stderr.write(`unreadable input: ${err.message}\n`);
    return 2;
  }
  const results = docs.map(validate);
  process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
  return results.every((r) => r.valid) ? 0 : 1;
}

process.exitCode = await main();
