/** A stage's mixer: built next (issue 13). */
export function MixerPage({ stageId }: { stageId: string }) {
  return (
    <main class="card">
      <h1>Mixer of {stageId}</h1>
    </main>
  )
}
