// Parse Mermaid flowcharts with mermaid's own parser under jsdom (no
// browser needed). Usage: node mermaid-check.mjs FILE...; a file may be an
// insta snapshot (`.snap`): its header is skipped. Exits 1 if any fails.
// Run through mermaid-check.sh, which installs mermaid and jsdom.
import { JSDOM } from 'jsdom';
import { readFileSync } from 'node:fs';
const dom = new JSDOM('<!doctype html><html><body></body></html>', { pretendToBeVisual: true });
globalThis.window = dom.window;
globalThis.document = dom.window.document;
for (const k of ['Element', 'HTMLElement', 'Node', 'DOMParser', 'navigator']) {
  if (!(k in globalThis)) globalThis[k] = dom.window[k];
}
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' });
let failed = 0;
for (const f of process.argv.slice(2)) {
  let text = readFileSync(f, 'utf8');
  if (f.endsWith('.snap')) {
    // insta: a `---` YAML header, then the snapshot body.
    text = text.slice(text.indexOf('\n---\n') + 5);
  }
  try {
    const r = await mermaid.parse(text);
    // Also inspect what the parser understood: vertices and their labels.
    const diag = await mermaid.mermaidAPI.getDiagramFromText(text);
    const db = diag.db;
    const vertices = db.getVertices();
    const edges = db.getEdges();
    const subgraphs = db.getSubGraphs();
    console.log(`ok ${f}: ${r.diagramType}, ${vertices.size} nodes, ${edges.length} edges, ${subgraphs.length} subgraphs`);
    if (process.env.SHOW) for (const [id, v] of vertices) console.log(`  ${id} [${v.type}] ${JSON.stringify(v.text)}`);
    if (process.env.SHOW) for (const s of subgraphs) console.log(`  ${s.id} ${JSON.stringify(s.title)} ${s.nodes.length}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${f}: ${e.message ?? e}`);
  }
}
process.exit(failed ? 1 : 0);
