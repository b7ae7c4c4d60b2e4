#!/usr/bin/env node
// Checks deploy/k8s and deploy/Dockerfile (docs/DEPLOY.md "Checks"):
//
// 1. Schema: every object of every manifest is validated against the JSON
//    schema of its apiVersion/kind from the npm package kubernetes-models
//    (compiled from the Kubernetes OpenAPI spec): types, enums, formats
//    (quantities, int32...), required fields. The OpenAPI spec leaves
//    additionalProperties open, so unknown (e.g. misspelled) fields are found
//    separately, as kubectl's strict field validation / kubeconform -strict
//    would: the schema's validator runs on a Proxy of the object, and any key
//    it never looks at (on an object that is not a map) is an unknown field.
// 2. Invariants docs/DEPLOY.md promises (readiness on /health, grace period vs
//    preStop + BEE_DRAIN, HPA/PDB/Service/ConfigMap/PVC references,
//    kustomization lists every file, ...).
// 3. The Dockerfile: dockerfile-utils' linter (errors fail) plus agreement
//    with the Deployment (uid, port, BEE_DRAIN, /health, SIGTERM).
// 4. Self-test: broken copies of the real files (misspelled field, wrong
//    type, missing required field, HPA pointing elsewhere, ...) are written to
//    a temp dir and each must fail with the expected message.
//
// Usage: node tests/k8s/lint.cjs [--k8s DIR] [--dockerfile FILE] [--no-self-test]
// Modules come from NODE_PATH (tests/cli/k8s_lint.sh sets .cache/k8s-lint,
// filled by scripts/setup-lint.sh). Exit 0 ok, 1 problems found.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const YAML = require('yaml');
const dockerfileUtils = require('dockerfile-utils');
const { DockerfileParser } = require('dockerfile-ast');

const root = path.resolve(__dirname, '..', '..');

// ---------------------------------------------------------------- schema
function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return null;
  const mod = `kubernetes-models/${apiVersion}`; // core v1 is kubernetes-models/v1
  let m;
  try { m = require(mod); } catch (e) { return null; }
  const M = m[kind];
  return typeof M === 'function' && M.apiVersion === apiVersion && M.kind === kind ? M : null;
}

// Runs Model's validator on a Proxy of obj; returns {schemaErrors, unknown}.
function strictValidate(Model, obj) {
  const seen = new Map(); // raw object -> {read: Set of keys, enumerated}
  const wrap = (v) => {
    if (v === null || typeof v !== 'object') return v;
    const rec = { read: new Set(), enumerated: false };
    seen.set(v, rec);
    const cache = new Map();
    return new Proxy(v, {
      get(t, k, r) {
        const x = Reflect.get(t, k, r);
        if (typeof k !== 'string' || !Object.prototype.hasOwnProperty.call(t, k)) return x;
        rec.read.add(k);
        if (!cache.has(k)) cache.set(k, wrap(x));
        return cache.get(k);
      },
      // maps (labels, annotations, ConfigMap data, resource lists) are
      // validated by enumerating their keys: every key is then allowed
      ownKeys(t) { rec.enumerated = true; return Reflect.ownKeys(t); },
    });
  };
  const raw = JSON.parse(JSON.stringify(obj));
  let schemaErrors = null;
  try { Model.prototype.validate.call(wrap(raw)); } catch (e) { schemaErrors = e.message; }
  const unknown = [];
  const walk = (v, p) => {
    if (v === null || typeof v !== 'object') return;
    const rec = seen.get(v);
    for (const k of Object.keys(v)) {
      if (!Array.isArray(v) && rec && !rec.enumerated && !rec.read.has(k)) unknown.push(`${p}/${k}`);
      else walk(v[k], `${p}/${k}`);
    }
  };
  walk(raw, '');
  return { schemaErrors, unknown };
}

// kustomize.config.k8s.io has no OpenAPI schema; the fields bee may use.
const KUSTOMIZATION_KEYS = new Set(['apiVersion', 'kind', 'namespace', 'namePrefix', 'nameSuffix', 'resources',
  'labels', 'commonLabels', 'commonAnnotations', 'images', 'patches', 'configMapGenerator', 'secretGenerator',
  'generatorOptions', 'replicas', 'components']);

// ---------------------------------------------------------------- helpers
const subset = (a, b) => a && b && Object.keys(a).length > 0 && Object.entries(a).every(([k, v]) => b[k] === v);
const fmt = (o) => JSON.stringify(o);

function loadDocs(file, errors) {
  const text = fs.readFileSync(file, 'utf8');
  const docs = [];
  for (const d of YAML.parseAllDocuments(text, { uniqueKeys: true })) {
    if (d.errors.length) { for (const e of d.errors) errors.push(`${path.basename(file)}: YAML: ${e.message.split('\n')[0]}`); continue; }
    for (const w of d.warnings) errors.push(`${path.basename(file)}: YAML: ${w.message.split('\n')[0]}`);
    const o = d.toJS();
    if (o !== null && o !== undefined) docs.push(o);
  }
  return docs;
}

// ---------------------------------------------------------------- lint
function lintK8s(dir, errors) {
  const kfile = path.join(dir, 'kustomization.yaml');
  if (!fs.existsSync(kfile)) { errors.push('kustomization.yaml missing'); return null; }
  const [kust] = loadDocs(kfile, errors);
  if (!kust) return null;
  if (kust.apiVersion !== 'kustomize.config.k8s.io/v1beta1' || kust.kind !== 'Kustomization')
    errors.push(`kustomization.yaml: apiVersion/kind ${kust.apiVersion}/${kust.kind}`);
  for (const k of Object.keys(kust)) if (!KUSTOMIZATION_KEYS.has(k)) errors.push(`kustomization.yaml: unknown field ${k}`);
  const resources = Array.isArray(kust.resources) ? kust.resources : [];
  const files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml').sort();
  for (const f of files) if (!resources.includes(f)) errors.push(`kustomization.yaml: ${f} is in deploy/k8s but not listed in resources`);
  for (const r of resources) if (!files.includes(r)) errors.push(`kustomization.yaml: resource ${r} does not exist`);
  if (new Set(resources).size !== resources.length) errors.push('kustomization.yaml: a resource is listed twice');

  const objs = [];
  for (const f of files) {
    for (const o of loadDocs(path.join(dir, f), errors)) {
      const where = `${f}: ${o && o.kind}/${o && o.metadata && o.metadata.name}`;
      const M = modelFor(o.apiVersion, o.kind);
      if (!M) { errors.push(`${where}: no schema for apiVersion ${o.apiVersion} kind ${o.kind}`); continue; }
      const { schemaErrors, unknown } = strictValidate(M, o);
      if (schemaErrors) errors.push(`${where}: schema: ${schemaErrors}`);
      for (const u of unknown) errors.push(`${where}: unknown field ${u}`);
      if (o.metadata && o.metadata.namespace && kust.namespace && o.metadata.namespace !== kust.namespace)
        errors.push(`${where}: namespace ${o.metadata.namespace} != kustomization namespace ${kust.namespace}`);
      objs.push({ file: f, o });
    }
  }
  const byKind = (k) => objs.filter((x) => x.o.kind === k).map((x) => x.o);
  const names = (k) => new Set(byKind(k).map((o) => o.metadata && o.metadata.name));
  const seenIds = new Set();
  for (const { o } of objs) {
    const id = `${o.kind}/${o.metadata && o.metadata.name}`;
    if (seenIds.has(id)) errors.push(`${id} defined twice`);
    seenIds.add(id);
  }
  if (kust.namespace && !names('Namespace').has(kust.namespace))
    errors.push(`kustomization namespace ${kust.namespace} has no Namespace object`);

  const deps = byKind('Deployment');
  if (deps.length !== 1) { errors.push(`expected exactly one Deployment, found ${deps.length}`); return null; }
  const dep = deps[0];
  const spec = dep.spec || {};
  const pod = (spec.template && spec.template.spec) || {};
  const podLabels = (spec.template && spec.template.metadata && spec.template.metadata.labels) || {};
  const D = `Deployment/${dep.metadata.name}`;
  if (!subset(spec.selector && spec.selector.matchLabels, podLabels))
    errors.push(`${D}: selector ${fmt(spec.selector)} does not match the pod labels ${fmt(podLabels)}`);
  const c = (pod.containers || []).find((x) => x.name === 'bee') || (pod.containers || [])[0];
  if (!c) { errors.push(`${D}: no container`); return null; }
  const env = Object.fromEntries((c.env || []).map((e) => [e.name, e.value]));
  const ports = c.ports || [];
  const portOk = (p) => ports.some((x) => x.name === p || x.containerPort === p);
  const probe = (name, p) => {
    if (!p) { errors.push(`${D}: container has no ${name}`); return; }
    const h = p.httpGet || p.tcpSocket;
    if (h && !portOk(h.port)) errors.push(`${D}: ${name} port ${h.port} is not a container port`);
  };
  probe('readinessProbe', c.readinessProbe);
  probe('livenessProbe', c.livenessProbe);
  probe('startupProbe', c.startupProbe);
  if (c.readinessProbe && !(c.readinessProbe.httpGet && c.readinessProbe.httpGet.path === '/health'))
    errors.push(`${D}: readinessProbe must be httpGet /health (503 while loading and draining), got ${fmt(c.readinessProbe.httpGet || c.readinessProbe)}`);
  if (c.livenessProbe && c.livenessProbe.httpGet && c.livenessProbe.httpGet.path === '/health')
    errors.push(`${D}: livenessProbe on /health would restart draining pods (docs/DEPLOY.md: TCP only)`);
  if (String(env.BEE_PORT) !== String((ports[0] || {}).containerPort))
    errors.push(`${D}: BEE_PORT ${env.BEE_PORT} != containerPort ${(ports[0] || {}).containerPort}`);
  const ann = (spec.template.metadata && spec.template.metadata.annotations) || {};
  if (ann['prometheus.io/port'] && ann['prometheus.io/port'] !== String(env.BEE_PORT))
    errors.push(`${D}: prometheus.io/port ${ann['prometheus.io/port']} != BEE_PORT ${env.BEE_PORT}`);

  // grace period >= preStop pause + drain
  const drain = Number(env.BEE_DRAIN);
  if (!Number.isInteger(drain) || drain <= 0) errors.push(`${D}: BEE_DRAIN must be set to a positive number of seconds, got ${env.BEE_DRAIN}`);
  let preStop = 0;
  const ps = c.lifecycle && c.lifecycle.preStop;
  if (ps && ps.exec && Array.isArray(ps.exec.command) && ps.exec.command[0] === 'sleep') preStop = Number(ps.exec.command[1]);
  else if (ps && ps.sleep) preStop = Number(ps.sleep.seconds);
  else errors.push(`${D}: no preStop pause (sleep) before SIGTERM`);
  const grace = pod.terminationGracePeriodSeconds === undefined ? 30 : pod.terminationGracePeriodSeconds;
  if (!(grace >= preStop + drain))
    errors.push(`${D}: terminationGracePeriodSeconds ${grace} < preStop ${preStop} + BEE_DRAIN ${drain}`);

  // volumes: mounts reference volumes; ConfigMaps and PVCs exist here
  const vols = Object.fromEntries((pod.volumes || []).map((v) => [v.name, v]));
  const cms = Object.fromEntries(byKind('ConfigMap').map((o) => [o.metadata.name, o]));
  for (const m of c.volumeMounts || []) {
    const v = vols[m.name];
    if (!v) { errors.push(`${D}: volumeMount ${m.name} has no volume`); continue; }
    if (v.configMap && m.subPath && cms[v.configMap.name] && !(m.subPath in (cms[v.configMap.name].data || {})))
      errors.push(`${D}: subPath ${m.subPath} is not a key of ConfigMap ${v.configMap.name}`);
  }
  for (const v of pod.volumes || []) {
    if (v.configMap && !cms[v.configMap.name])
      errors.push(`${D}: volume ${v.name} references ConfigMap ${v.configMap.name}, which is not in the kustomization`);
    if (v.persistentVolumeClaim && !names('PersistentVolumeClaim').has(v.persistentVolumeClaim.claimName))
      errors.push(`${D}: volume ${v.name} references PVC ${v.persistentVolumeClaim.claimName}, which is not in the kustomization`);
  }
  const args = c.args || [];
  const pi = args.indexOf('--policy');
  if (pi >= 0 && !(c.volumeMounts || []).some((m) => m.mountPath === args[pi + 1]))
    errors.push(`${D}: --policy ${args[pi + 1]} is not a mounted file`);
  for (const [n, cm] of Object.entries(cms))
    for (const [k, v] of Object.entries(cm.data || {}))
      if (k.endsWith('.json')) { try { JSON.parse(v); } catch (e) { errors.push(`ConfigMap/${n}: ${k} is not JSON: ${e.message}`); } }

  // HPA, PDB, Service
  for (const h of byKind('HorizontalPodAutoscaler')) {
    const r = (h.spec && h.spec.scaleTargetRef) || {};
    if (r.kind !== 'Deployment' || r.apiVersion !== 'apps/v1' || r.name !== dep.metadata.name)
      errors.push(`HorizontalPodAutoscaler/${h.metadata.name}: scaleTargetRef ${fmt(r)} is not ${D}`);
    if ((h.spec.minReplicas || 1) > h.spec.maxReplicas) errors.push(`HorizontalPodAutoscaler/${h.metadata.name}: minReplicas > maxReplicas`);
    const cpuUtil = (h.spec.metrics || []).some((m) => m.resource && m.resource.name === 'cpu' && m.resource.target && m.resource.target.type === 'Utilization');
    if (cpuUtil && !(c.resources && c.resources.requests && c.resources.requests.cpu))
      errors.push(`HorizontalPodAutoscaler/${h.metadata.name}: CPU utilization target but the container has no CPU request`);
  }
  if (byKind('HorizontalPodAutoscaler').length === 0) errors.push('no HorizontalPodAutoscaler');
  for (const p of byKind('PodDisruptionBudget'))
    if (!subset(p.spec && p.spec.selector && p.spec.selector.matchLabels, podLabels))
      errors.push(`PodDisruptionBudget/${p.metadata.name}: selector ${fmt(p.spec.selector)} does not match the pod labels ${fmt(podLabels)}`);
  if (byKind('PodDisruptionBudget').length === 0) errors.push('no PodDisruptionBudget');
  const svcs = byKind('Service');
  if (svcs.length === 0) errors.push('no Service');
  for (const s of svcs) {
    if (!subset(s.spec && s.spec.selector, podLabels))
      errors.push(`Service/${s.metadata.name}: selector ${fmt(s.spec.selector)} does not match the pod labels ${fmt(podLabels)}`);
    for (const p of (s.spec && s.spec.ports) || [])
      if (!portOk(p.targetPort === undefined ? p.port : p.targetPort))
        errors.push(`Service/${s.metadata.name}: targetPort ${p.targetPort} is not a container port`);
  }
  return { dep, c, env, pod };
}

function lintDockerfile(file, k8s, errors) {
  const text = fs.readFileSync(file, 'utf8');
  for (const d of dockerfileUtils.validate(text)) {
    const sev = d.severity === 1 ? 'error' : 'warning';
    if (sev === 'error') errors.push(`Dockerfile:${d.range.start.line + 1}: ${d.message}`);
    else console.log(`# Dockerfile:${d.range.start.line + 1}: warning: ${d.message}`);
  }
  const df = DockerfileParser.parse(text);
  const froms = df.getFROMs();
  const last = froms.length ? froms[froms.length - 1].getRange().start.line : 0;
  const final = df.getInstructions().filter((i) => i.getRange().start.line >= last); // the runtime stage
  const kw = (k) => final.filter((i) => i.getKeyword() === k);
  const env = {};
  for (const i of kw('ENV')) for (const p of i.getProperties()) env[p.getName()] = p.getValue();
  const user = kw('USER').map((i) => i.getArgumentsContent()).pop();
  if (!user || /^(0|root)(:|$)/.test(user)) errors.push(`Dockerfile: the runtime stage must run as a non-root USER, got ${user}`);
  const hc = kw('HEALTHCHECK').map((i) => i.getTextContent()).pop() || '';
  if (!hc.includes('/health')) errors.push('Dockerfile: HEALTHCHECK must request /health');
  const stop = kw('STOPSIGNAL').map((i) => i.getArgumentsContent()).pop();
  if (stop && stop !== 'SIGTERM') errors.push(`Dockerfile: STOPSIGNAL ${stop}: bee serve drains on SIGTERM`);
  if (!k8s) return;
  const sc = k8s.pod.securityContext || {};
  if (user && sc.runAsUser !== undefined && user.split(':')[0] !== String(sc.runAsUser))
    errors.push(`Dockerfile: USER ${user} != Deployment runAsUser ${sc.runAsUser}`);
  const exposed = kw('EXPOSE').map((i) => i.getArgumentsContent()).join(' ').split(/\s+/).map((p) => p.split('/')[0]);
  if (!exposed.includes(String(env.BEE_PORT))) errors.push(`Dockerfile: EXPOSE ${exposed.join(' ')} does not include BEE_PORT ${env.BEE_PORT}`);
  for (const k of ['BEE_PORT', 'BEE_DRAIN'])
    if (env[k] !== undefined && k8s.env[k] !== undefined && String(env[k]) !== String(k8s.env[k]))
      errors.push(`Dockerfile: ENV ${k}=${env[k]} != Deployment ${k}=${k8s.env[k]}`);
}

function lint(k8sDir, dockerfile) {
  const errors = [];
  let k8s = null;
  try { k8s = lintK8s(k8sDir, errors); } catch (e) { errors.push(`k8s check crashed: ${e.stack}`); }
  if (dockerfile) {
    try { lintDockerfile(dockerfile, k8s, errors); } catch (e) { errors.push(`Dockerfile check crashed: ${e.stack}`); }
  }
  return errors;
}

// ---------------------------------------------------------------- self-test
// Each case edits the text of one real file; the edit must apply (so a
// manifest change that makes a case meaningless is noticed) and the lint must
// report `expect`.
const CASES = [
  { name: 'misspelled field', file: 'deployment.yaml', from: 'imagePullPolicy:', to: 'imagePullPolisy:', expect: 'unknown field /spec/template/spec/containers/0/imagePullPolisy' },
  { name: 'misspelled nested field', file: 'deployment.yaml', from: 'claimName: bee-models, readOnly: true', to: 'claimName: bee-models, readonly: true', expect: 'unknown field /spec/template/spec/volumes/0/persistentVolumeClaim/readonly' },
  { name: 'wrong type (replicas as string)', file: 'deployment.yaml', from: 'replicas: 2', to: 'replicas: "2"', expect: 'data/spec/replicas must be integer' },
  { name: 'wrong type (bad quantity)', file: 'deployment.yaml', from: 'memory: 4Gi', to: 'memory: 4 GB', expect: 'must match format "quantity"' },
  { name: 'bad enum', file: 'service.yaml', from: 'sessionAffinity: ClientIP', to: 'sessionAffinity: Sticky', expect: 'sessionAffinity must be equal to one of the allowed values' },
  { name: 'missing required field', file: 'deployment.yaml', from: '        - name: bee\n          image:', to: '        - image:', expect: 'must have required property name' },
  { name: 'wrong apiVersion', file: 'hpa.yaml', from: 'apiVersion: autoscaling/v2\n', to: 'apiVersion: autoscaling/v3\n', expect: 'no schema for apiVersion autoscaling/v3' },
  { name: 'HPA targets a wrong name', file: 'hpa.yaml', from: 'kind: Deployment, name: bee}', to: 'kind: Deployment, name: bee-server}', expect: 'scaleTargetRef' },
  { name: 'PDB selector does not match', file: 'pdb.yaml', from: 'matchLabels: {app.kubernetes.io/name: bee}', to: 'matchLabels: {app: bee}', expect: 'PodDisruptionBudget/bee: selector' },
  { name: 'Service selector does not match', file: 'service.yaml', from: 'selector: {app.kubernetes.io/name: bee}', to: 'selector: {app.kubernetes.io/name: bee-web}', expect: 'Service/bee: selector' },
  { name: 'grace period too short', file: 'deployment.yaml', from: 'terminationGracePeriodSeconds: 45', to: 'terminationGracePeriodSeconds: 30', expect: 'terminationGracePeriodSeconds 30 < preStop 5 + BEE_DRAIN 30' },
  { name: 'drain longer than the grace period', file: 'deployment.yaml', from: '{name: BEE_DRAIN, value: "30"}', to: '{name: BEE_DRAIN, value: "60"}', expect: 'terminationGracePeriodSeconds 45 < preStop 5 + BEE_DRAIN 60' },
  { name: 'readiness not on /health', file: 'deployment.yaml', from: 'httpGet: {path: /health, port: http}', to: 'httpGet: {path: /healthz, port: http}', expect: 'readinessProbe must be httpGet /health' },
  { name: 'no liveness probe', file: 'deployment.yaml', from: 'livenessProbe:', to: 'x-livenessProbe:', expect: 'container has no livenessProbe' },
  { name: 'ConfigMap not in the kustomization', file: 'deployment.yaml', from: 'configMap: {name: bee-policy}', to: 'configMap: {name: bee-policies}', expect: 'references ConfigMap bee-policies' },
  { name: 'file not listed in kustomization.yaml', file: 'kustomization.yaml', from: '  - pdb.yaml\n', to: '', expect: 'pdb.yaml is in deploy/k8s but not listed' },
  { name: 'YAML duplicate key', file: 'service.yaml', from: 'sessionAffinity: ClientIP', to: 'sessionAffinity: ClientIP\n  sessionAffinity: None', expect: 'YAML' },
  { name: 'Dockerfile unknown instruction', file: 'Dockerfile', from: 'WORKDIR /data', to: 'WORKDIRR /data', expect: 'Unknown instruction: WORKDIRR' },
  { name: 'Dockerfile unknown flag', file: 'Dockerfile', from: 'COPY --from=build', to: 'COPY --frm=build', expect: 'Unknown flag: frm' },
  { name: 'Dockerfile drain differs from the Deployment', file: 'Dockerfile', from: 'BEE_DRAIN=30', to: 'BEE_DRAIN=60', expect: 'ENV BEE_DRAIN=60 != Deployment BEE_DRAIN=30' },
  { name: 'Dockerfile runs as root', file: 'Dockerfile', from: 'USER 10001:10001', to: 'USER 0', expect: 'non-root USER' },
];

function selfTest(k8sDir, dockerfile) {
  let passed = 0, failed = 0;
  const tmp = fs.mkdtempSync(path.join(process.env.BEE_TMPDIR || os.tmpdir(), 'k8s-lint.'));
  try {
    CASES.forEach((t, i) => {
      const d = path.join(tmp, String(i));
      fs.mkdirSync(d);
      fs.cpSync(k8sDir, path.join(d, 'k8s'), { recursive: true });
      fs.copyFileSync(dockerfile, path.join(d, 'Dockerfile'));
      const target = t.file === 'Dockerfile' ? path.join(d, 'Dockerfile') : path.join(d, 'k8s', t.file);
      const text = fs.readFileSync(target, 'utf8');
      let why = null;
      if (!text.includes(t.from)) why = `the edit does not apply: ${fmt(t.from)} not in ${t.file}`;
      else {
        fs.writeFileSync(target, text.replace(t.from, t.to));
        const errs = lint(path.join(d, 'k8s'), path.join(d, 'Dockerfile'));
        if (!errs.some((e) => e.includes(t.expect))) why = `expected an error containing ${fmt(t.expect)}, got ${errs.length ? errs.join(' | ') : 'none'}`;
      }
      if (why) { failed++; console.log(`not ok - broken copy rejected: ${t.name}: ${why}`); }
      else { passed++; console.log(`ok - broken copy rejected: ${t.name}`); }
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return { passed, failed };
}

// ---------------------------------------------------------------- main
if (require.main === module) {
  const argv = process.argv.slice(2);
  const opt = (n, def) => { const i = argv.indexOf(n); return i >= 0 ? argv[i + 1] : def; };
  const k8sDir = path.resolve(opt('--k8s', path.join(root, 'deploy', 'k8s')));
  const dockerfile = path.resolve(opt('--dockerfile', path.join(root, 'deploy', 'Dockerfile')));
  const errors = lint(k8sDir, dockerfile);
  let passed = 0, failed = 0;
  if (errors.length) { failed++; console.log(`not ok - ${k8sDir} and ${dockerfile}:`); for (const e of errors) console.log(`  ${e}`); }
  else {
    passed++;
    const n = fs.readdirSync(k8sDir).filter((f) => /\.ya?ml$/.test(f)).length;
    console.log(`ok - ${n} manifests in ${path.relative(root, k8sDir) || k8sDir} and ${path.relative(root, dockerfile) || dockerfile}: schema, invariants, Dockerfile lint`);
  }
  if (!argv.includes('--no-self-test')) {
    const r = selfTest(path.join(root, 'deploy', 'k8s'), path.join(root, 'deploy', 'Dockerfile'));
    passed += r.passed; failed += r.failed;
  }
  console.log(`k8s-lint: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

module.exports = { lint, strictValidate };
