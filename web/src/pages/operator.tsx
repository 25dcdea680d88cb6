/** Operator: built next (issue 13). */
export function OperatorPage() {
  return (
    <main class="card">
      <h1>Operator</h1>
    </main>
  )
}
