/**
 * Retained messages indexed by topic level (a trie), so that finding the retained messages for a
 * subscription costs what matches, not what is stored. Aedes' memory persistence tests every retained
 * topic against every filter on each SUBSCRIBE: tens of milliseconds with 50k retained topics, during
 * which the broker serves nobody.
 *
 * MQTT 3.1.1 matching (§4.7): levels are separated by `/` and may be empty (`a//b`, `/a`, `a/`); `+`
 * matches exactly one level, empty ones included; `#` (last) matches its parent level and everything
 * below it (`a/#` matches `a`, `a/b`, `a/b/c`); a filter starting with a wildcard (`#`, `+/...`)
 * does not match topics starting with `$` [MQTT-4.7.2-1].
 */

interface Node<T> {
  /** Created when the first child is: most nodes are leaves. */
  children: Map<string, Node<T>> | undefined
  value: T | undefined
}

const newNode = <T>(): Node<T> => ({ children: undefined, value: undefined })

export class RetainedIndex<T> {
  readonly #root: Node<T> = newNode()
  #size = 0

  /** How many topics hold a value. */
  get size(): number {
    return this.#size
  }

  get(topic: string): T | undefined {
    return this.#find(topic)?.value
  }

  /** Stores (or replaces) the value of a concrete topic; returns the value it replaced. */
  set(topic: string, value: T): T | undefined {
    let node = this.#root
    let start = 0
    for (;;) {
      const end = topic.indexOf('/', start)
      const level = end === -1 ? topic.slice(start) : topic.slice(start, end)
      node.children ??= new Map()
      let child = node.children.get(level)
      if (!child) {
        child = newNode()
        node.children.set(level, child)
      }
      node = child
      if (end === -1) break
      start = end + 1
    }
    const previous = node.value
    if (previous === undefined) this.#size++
    node.value = value
    return previous
  }

  /** Forgets a topic (MQTT: a retained message with an empty payload); false when it held nothing. */
  delete(topic: string): boolean {
    const levels = topic.split('/')
    const path: Node<T>[] = [this.#root]
    let node = this.#root
    for (const level of levels) {
      const child = node.children?.get(level)
      if (!child) return false
      path.push(child)
      node = child
    }
    if (node.value === undefined) return false
    node.value = undefined
    this.#size--
    // prune the branch back to the last node that still holds a value or other children
    for (let i = levels.length; i > 0; i--) {
      const current = path[i]!
      if (current.value !== undefined || (current.children && current.children.size > 0)) break
      const parent = path[i - 1]!
      parent.children!.delete(levels[i - 1]!)
      if (parent.children!.size === 0) parent.children = undefined
    }
    return true
  }

  /** Every value whose topic matches the filter (a valid MQTT filter; wildcards allowed). */
  match(filter: string, out: T[] = []): T[] {
    const levels = filter.split('/')
    this.#match(this.#root, levels, 0, out)
    return out
  }

  /** Every stored value, topics starting with `$` included (a parent before its children). */
  values(): T[] {
    const out: T[] = []
    collect(this.#root, out)
    return out
  }

  /** The node of a concrete topic, without splitting it into an array. */
  #find(topic: string): Node<T> | undefined {
    let node: Node<T> | undefined = this.#root
    let start = 0
    for (;;) {
      const end = topic.indexOf('/', start)
      node = node.children?.get(end === -1 ? topic.slice(start) : topic.slice(start, end))
      if (!node || end === -1) return node
      start = end + 1
    }
  }

  #match(node: Node<T>, levels: readonly string[], i: number, out: T[]): void {
    if (i === levels.length) {
      if (node.value !== undefined) out.push(node.value)
      return
    }
    const level = levels[i]!
    if (level === '#') {
      // the parent level itself (`a/#` matches `a`; at the root there is no parent topic)
      if (i > 0 && node.value !== undefined) out.push(node.value)
      this.#collectBelow(node, i === 0, out)
      return
    }
    const children = node.children
    if (!children) return
    if (level === '+') {
      for (const [key, child] of children) {
        if (i === 0 && key.startsWith('$')) continue
        this.#match(child, levels, i + 1, out)
      }
      return
    }
    const child = children.get(level)
    if (child) this.#match(child, levels, i + 1, out)
  }

  /** Every value strictly below `node`; at the root, `$` topics are skipped (wildcard rule). */
  #collectBelow(node: Node<T>, atRoot: boolean, out: T[]): void {
    if (!node.children) return
    for (const [key, child] of node.children) {
      if (atRoot && key.startsWith('$')) continue
      collect(child, out)
    }
  }
}

/** Depth first, a parent before its children, children in insertion order (depth = topic levels). */
function collect<T>(node: Node<T>, out: T[]): void {
  if (node.value !== undefined) out.push(node.value)
  if (node.children) for (const child of node.children.values()) collect(child, out)
}
