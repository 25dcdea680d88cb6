/** Stages: built next (issue 13). */
export function StagesPage() {
  return (
    <main class="card">
      <h1>Stages</h1>
    </main>
  )
}
