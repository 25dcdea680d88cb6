import t from 'tap'
import { actions } from '../../schemas/index.ts'
import { startTestHub } from '../helpers/hub.ts'

t.test(
  'every action the hub serves is in the schema catalogue (and so in schemas/json), and nothing else is',
  async (t) => {
    const th = await startTestHub(t)
    const served = th.hub.pipeline.actions.map((a) => a.name).sort()
    t.same(served, actions.map((a) => a.name).sort())
    for (const action of actions)
      t.match(action.name, /^[a-z]+\.[a-zA-Z]+$/, `${action.name} is a valid topic level`)
  },
)
