import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import t from 'tap'
import { FIRST_LOAD_BUDGET_BYTES, buildWeb, bundleReport } from '../../scripts/build-web.ts'

t.test(
  'the first load (script and style, gzip as served) stays under 200 KB and carries no schema library',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'stagehub-web-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const metafile = await buildWeb({ outdir: dir })
    const report = await bundleReport(metafile)
    const { firstLoad, inputs } = report
    t.comment(
      `first load ${firstLoad.gzip} B gzip, ${firstLoad.brotli} B brotli, ${firstLoad.bytes} B as they are; ` +
        `largest inputs: ${inputs
          .slice(0, 5)
          .map((i) => `${i.path} ${i.bytes}`)
          .join(', ')}`,
    )
    const unhashed = (files: string[]) => files.map((f) => f.replace(/-[A-Z0-9]{8}\./, '-HASH.')).sort()
    t.same(
      unhashed(firstLoad.files),
      ['chunk-HASH.js', 'main-HASH.css', 'main-HASH.js'],
      'the entry, its stylesheet and the chunk it shares with what loads later',
    )
    t.same(unhashed(report.lazy.files), ['engine-HASH.js'], 'the browser media engine loads later')
    const firstInputs = Object.entries(metafile.outputs)
      .filter(([file]) => firstLoad.files.some((f) => file.endsWith(`/${f}`)))
      .flatMap(([, output]) => Object.keys(output.inputs))
    t.same(
      firstInputs.filter((i) => i.includes('mediasoup-client')),
      [],
      'mediasoup-client is not in the first load: it comes with the engine when a person joins audio',
    )
    t.comment(`loaded later: ${report.lazy.gzip} B gzip`)
    t.ok(
      firstLoad.gzip < FIRST_LOAD_BUDGET_BYTES,
      `${firstLoad.gzip} B gzip within the ${FIRST_LOAD_BUDGET_BYTES} B budget`,
    )
    t.ok(firstLoad.brotli < firstLoad.gzip, 'brotli is smaller still')
    t.ok(inputs.length > 10 && inputs[0]!.bytes > 0, 'the metafile names the inputs')
    t.same(
      inputs.filter((i) => i.path.includes('@sinclair/typebox')).map((i) => i.path),
      [],
      'TypeBox is not in the bundle',
    )
    t.same(
      inputs
        .filter((i) => i.path.startsWith('schemas/') && !i.path.startsWith('schemas/json/'))
        .map((i) => i.path)
        .sort(),
      ['schemas/mix-rule.ts', 'schemas/topic-shapes.ts'],
      'of schemas/ only the topic shapes, the mix rule (plain code) and generated JSON Schemas for form limits: no TypeBox schema reaches the browser',
    )

    for (const file of Object.keys(metafile.outputs).filter((f) => /\.(js|css)$/.test(f))) {
      const plain = readFileSync(file)
      t.same(gunzipSync(readFileSync(`${file}.gz`)), plain, `${file}.gz decodes to the file`)
      t.same(brotliDecompressSync(readFileSync(`${file}.br`)), plain, `${file}.br decodes to the file`)
    }
  },
)
