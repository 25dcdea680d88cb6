/** A stage's settings for its admins: built next (issue 13). */
export function StageSettingsPage({ stageId }: { stageId: string }) {
  return (
    <main class="card">
      <h1>Settings of {stageId}</h1>
    </main>
  )
}
