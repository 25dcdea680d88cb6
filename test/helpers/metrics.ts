/**
 * A value at the hub's /metrics: one series when `metric` names it with its labels
 * (`stagehub_connection_refusals_total{code="5"}`), else the sum of every series of the metric; 0 when
 * there is none yet.
 */
export async function metricValue(httpUrl: string, metric: string): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text()
  const exact = metric.includes('{')
  let sum = 0
  for (const line of text.split('\n')) {
    const matches = exact
      ? line.startsWith(`${metric} `)
      : line.startsWith(`${metric} `) || line.startsWith(`${metric}{`)
    if (matches) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}
