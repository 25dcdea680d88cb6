/** One stage: built next (issue 13). */
export function StagePage({ stageId }: { stageId: string }) {
  return (
    <main class="card">
      <h1>Stage {stageId}</h1>
    </main>
  )
}
