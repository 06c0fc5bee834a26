/**
 * The RTFS prelude: standard functions written in RTFS because they call RTFS functions (a native
 * cannot call back into RTFS code).
 *
 * Owns: the higher-order functions of the standard library (`map`, `filter`, `reduce`, `sort` with a
 * comparator, `update`, `comp`, ...). Results are eager vectors, as for the native sequence
 * functions. Each loop runs over an index into `(vec coll)`, so each is linear.
 * Must never: perform effects; it is loaded once per process and shared by every runtime.
 */

/** RTFS source text of the prelude. */
export const PRELUDE_SOURCE = String.raw`
;; ---------------------------------------------------------------------------------------------
;; Mapping and filtering

(defn map
  ([f coll]
   (let [v (vec coll) n (count v)]
     (loop [i 0 out []]
       (if (< i n) (recur (inc i) (conj out (f (nth v i)))) out))))
  ([f c1 c2]
   (let [v1 (vec c1) v2 (vec c2) n (min (count v1) (count v2))]
     (loop [i 0 out []]
       (if (< i n) (recur (inc i) (conj out (f (nth v1 i) (nth v2 i)))) out))))
  ([f c1 c2 c3]
   (let [v1 (vec c1) v2 (vec c2) v3 (vec c3) n (min (count v1) (count v2) (count v3))]
     (loop [i 0 out []]
       (if (< i n) (recur (inc i) (conj out (f (nth v1 i) (nth v2 i) (nth v3 i)))) out))))
  ([f c1 c2 c3 & colls]
   (let [vs (map vec (cons c1 (cons c2 (cons c3 colls))))
         n (apply min (map count vs))]
     (loop [i 0 out []]
       (if (< i n)
         (recur (inc i) (conj out (apply f (map (fn [v] (nth v i)) vs))))
         out)))))

(defn mapv
  ([f coll] (map f coll))
  ([f c1 c2] (map f c1 c2))
  ([f c1 c2 c3] (map f c1 c2 c3))
  ([f c1 c2 c3 & colls] (apply map f c1 c2 c3 colls)))

(defn map-indexed [f coll]
  (let [v (vec coll) n (count v)]
    (loop [i 0 out []]
      (if (< i n) (recur (inc i) (conj out (f i (nth v i)))) out))))

(defn filter [pred coll]
  (let [v (vec coll) n (count v)]
    (loop [i 0 out []]
      (if (< i n)
        (let [x (nth v i)] (recur (inc i) (if (pred x) (conj out x) out)))
        out))))

(defn filterv [pred coll] (filter pred coll))

(defn remove [pred coll]
  (let [v (vec coll) n (count v)]
    (loop [i 0 out []]
      (if (< i n)
        (let [x (nth v i)] (recur (inc i) (if (pred x) out (conj out x))))
        out))))

(defn keep [f coll]
  (let [v (vec coll) n (count v)]
    (loop [i 0 out []]
      (if (< i n)
        (let [y (f (nth v i))] (recur (inc i) (if (nil? y) out (conj out y))))
        out))))

(defn keep-indexed [f coll]
  (let [v (vec coll) n (count v)]
    (loop [i 0 out []]
      (if (< i n)
        (let [y (f i (nth v i))] (recur (inc i) (if (nil? y) out (conj out y))))
        out))))

(defn mapcat [f & colls] (apply concat (apply map f colls)))

;; ---------------------------------------------------------------------------------------------
;; Reducing

(defn reduce
  ([f coll]
   (let [v (vec coll) n (count v)]
     (if (zero? n)
       (f)
       (loop [i 1 acc (nth v 0)]
         (if (< i n) (recur (inc i) (f acc (nth v i))) acc)))))
  ([f init coll]
   (let [v (vec coll) n (count v)]
     (loop [i 0 acc init]
       (if (< i n) (recur (inc i) (f acc (nth v i))) acc)))))

(defn reduce-kv [f init coll]
  (cond
    (nil? coll) init
    (map? coll) (let [es (vec coll) n (count es)]
                  (loop [i 0 acc init]
                    (if (< i n)
                      (let [e (nth es i)] (recur (inc i) (f acc (nth e 0) (nth e 1))))
                      acc)))
    :else (let [v (vec coll) n (count v)]
            (loop [i 0 acc init]
              (if (< i n) (recur (inc i) (f acc i (nth v i))) acc)))))

(defn reductions
  ([f coll]
   (let [v (vec coll) n (count v)]
     (if (zero? n)
       [(f)]
       (loop [i 1 acc (nth v 0) out [(nth v 0)]]
         (if (< i n)
           (let [acc2 (f acc (nth v i))] (recur (inc i) acc2 (conj out acc2)))
           out)))))
  ([f init coll]
   (let [v (vec coll) n (count v)]
     (loop [i 0 acc init out [init]]
       (if (< i n)
         (let [acc2 (f acc (nth v i))] (recur (inc i) acc2 (conj out acc2)))
         out)))))

;; ---------------------------------------------------------------------------------------------
;; Searching and testing

(defn some [pred coll]
  (let [v (vec coll) n (count v)]
    (loop [i 0]
      (when (< i n)
        (let [r (pred (nth v i))] (if r r (recur (inc i))))))))

(defn every? [pred coll]
  (let [v (vec coll) n (count v)]
    (loop [i 0]
      (cond
        (>= i n) true
        (pred (nth v i)) (recur (inc i))
        :else false))))

(defn not-any? [pred coll] (not (some pred coll)))

(defn not-every? [pred coll] (not (every? pred coll)))

(defn take-while [pred coll]
  (let [v (vec coll) n (count v)]
    (loop [i 0 out []]
      (if (and (< i n) (pred (nth v i)))
        (recur (inc i) (conj out (nth v i)))
        out))))

(defn drop-while [pred coll]
  (let [v (vec coll) n (count v)]
    (loop [i 0]
      (if (and (< i n) (pred (nth v i)))
        (recur (inc i))
        (subvec v i)))))

(defn split-with [pred coll] [(take-while pred coll) (drop-while pred coll)])

;; ---------------------------------------------------------------------------------------------
;; Sorting and grouping

(defn sort
  ([coll] (rtfs.core/sort-natural coll))
  ([cmp coll]
   (let [before? (fn [a b]
                   (let [r (cmp a b)]
                     (if (number? r) (neg? r) (if r true false))))
         merge-runs (fn [src lo mid hi out]
                      (loop [a lo b mid out out]
                        (cond
                          (and (< a mid) (< b hi))
                          (let [x (nth src a) y (nth src b)]
                            (if (before? y x)
                              (recur a (inc b) (conj out y))
                              (recur (inc a) b (conj out x))))
                          (< a mid) (recur (inc a) b (conj out (nth src a)))
                          (< b hi) (recur a (inc b) (conj out (nth src b)))
                          :else out)))
         merge-pass (fn [src width]
                      (let [n (count src)]
                        (loop [lo 0 out []]
                          (if (< lo n)
                            (let [mid (min (+ lo width) n) hi (min (+ lo width width) n)]
                              (recur hi (merge-runs src lo mid hi out)))
                            out))))
         v (vec coll)
         n (count v)]
     (loop [src v width 1]
       (if (>= width n)
         src
         (recur (merge-pass src width) (* 2 width)))))))

(defn sort-by
  ([keyfn coll]
   (let [v (vec coll)] (rtfs.core/sort-by-keys (map keyfn v) v)))
  ([keyfn cmp coll]
   (let [pairs (map (fn [x] [(keyfn x) x]) coll)]
     (map (fn [p] (nth p 1)) (sort (fn [a b] (cmp (nth a 0) (nth b 0))) pairs)))))

(defn group-by [f coll]
  (reduce (fn [m x] (let [k (f x)] (assoc m k (conj (get m k []) x)))) {} coll))

(defn partition-by [f coll]
  (let [v (vec coll) n (count v)]
    (if (zero? n)
      []
      (loop [i 1 cur [(nth v 0)] k (f (nth v 0)) out []]
        (if (< i n)
          (let [x (nth v i) k2 (f x)]
            (if (= k k2)
              (recur (inc i) (conj cur x) k out)
              (recur (inc i) [x] k2 (conj out cur))))
          (conj out cur))))))

(defn min-key [k x & more]
  (loop [best x kb (k x) xs more]
    (if (seq xs)
      (let [y (first xs) ky (k y)]
        (if (<= ky kb) (recur y ky (rest xs)) (recur best kb (rest xs))))
      best)))

(defn max-key [k x & more]
  (loop [best x kb (k x) xs more]
    (if (seq xs)
      (let [y (first xs) ky (k y)]
        (if (>= ky kb) (recur y ky (rest xs)) (recur best kb (rest xs))))
      best)))

;; ---------------------------------------------------------------------------------------------
;; Maps

(defn update
  ([m k f] (assoc m k (f (get m k))))
  ([m k f x] (assoc m k (f (get m k) x)))
  ([m k f x y] (assoc m k (f (get m k) x y)))
  ([m k f x y & more] (assoc m k (apply f (get m k) x y more))))

(defn update-in [m ks f & args]
  (let [k (first ks) more (next ks)]
    (if more
      (assoc m k (apply update-in (get m k) more f args))
      (assoc m k (apply f (get m k) args)))))

(defn merge-with [f & maps]
  (reduce (fn [acc m]
            (if (nil? m)
              acc
              (reduce-kv (fn [a k v] (if (contains? a k) (assoc a k (f (get a k) v)) (assoc a k v)))
                         (if (nil? acc) {} acc)
                         m)))
          nil
          maps))

(defn update-vals [m f] (reduce-kv (fn [acc k v] (assoc acc k (f v))) {} m))

(defn update-keys [m f] (reduce-kv (fn [acc k v] (assoc acc (f k) v)) {} m))

;; ---------------------------------------------------------------------------------------------
;; Functions of functions

(defn juxt [& fs] (fn [& args] (map (fn [f] (apply f args)) fs)))

(defn comp
  ([] identity)
  ([f] f)
  ([f g] (fn [& args] (f (apply g args))))
  ([f g & more]
   (let [fs (reverse (cons f (cons g more))) n (count fs)]
     (fn [& args]
       (loop [i 1 r (apply (nth fs 0) args)]
         (if (< i n) (recur (inc i) ((nth fs i) r)) r))))))

(defn partial
  ([f] f)
  ([f & args] (fn [& more] (apply f (concat args more)))))

(defn complement [f] (fn [& args] (not (apply f args))))

(defn constantly [x] (fn [& args] x))

(defn fnil
  ([f x] (fn [a & more] (apply f (if (nil? a) x a) more)))
  ([f x y] (fn [a b & more] (apply f (if (nil? a) x a) (if (nil? b) y b) more)))
  ([f x y z] (fn [a b c & more] (apply f (if (nil? a) x a) (if (nil? b) y b) (if (nil? c) z c) more))))

(defn every-pred [p & ps]
  (let [preds (cons p ps)]
    (fn [& args] (every? (fn [q] (every? q args)) preds))))

(defn some-fn [p & ps]
  ;; As Clojure: up to 3 predicates try them on each argument in turn (and, with up to 3
  ;; arguments, a miss returns the last predicate's falsy answer); more predicates try each
  ;; predicate on the first 3 arguments, then on the rest; a miss is nil.
  (let [preds (vec (cons p ps))
        few (<= (count preds) 3)]
    (fn [& args]
      (let [args (vec args)]
        (cond
          (empty? args) nil
          few (or (some (fn [x] (some (fn [q] (q x)) preds)) args)
                  (when (<= (count args) 3) ((peek preds) (peek args))))
          :else (or (some (fn [q] (some q (take 3 args))) preds)
                    (some (fn [q] (some q (drop 3 args))) preds)))))))

(defn repeatedly [n f]
  (loop [i 0 out []]
    (if (< i n) (recur (inc i) (conj out (f))) out)))

(defn run! [proc coll]
  (let [v (vec coll) n (count v)]
    (loop [i 0]
      (when (< i n)
        (proc (nth v i))
        (recur (inc i))))))
`;

/** The names the prelude defines, in order. */
export const PRELUDE_NAMES: string[] = [
  'map',
  'mapv',
  'map-indexed',
  'filter',
  'filterv',
  'remove',
  'keep',
  'keep-indexed',
  'mapcat',
  'reduce',
  'reduce-kv',
  'reductions',
  'some',
  'every?',
  'not-any?',
  'not-every?',
  'take-while',
  'drop-while',
  'split-with',
  'sort',
  'sort-by',
  'group-by',
  'partition-by',
  'min-key',
  'max-key',
  'update',
  'update-in',
  'merge-with',
  'update-vals',
  'update-keys',
  'juxt',
  'comp',
  'partial',
  'complement',
  'constantly',
  'fnil',
  'every-pred',
  'some-fn',
  'repeatedly',
  'run!',
];
