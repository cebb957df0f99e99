"""Offline evaluation of recommenders on MovieLens-100K, the way the papers do it (issue 6).

- `movielens`: the dataset read from the installed recbole package (users, items in the
  federation's vocabulary order, ratings) and the PFedRec leave-one-out protocol: per user, by
  time, the latest interaction is the test item, the one before the validation item; 99 sampled
  negatives per held-out item (fixed seed) and the full-ranking candidate sets.
- `metrics`: HR@10 and NDCG@10 of any per-user scores, sampled and full ranking, vectorised.
- `baselines`: popularity and a centralized BPR matrix factorization, the rows to beat.

Nothing here touches a person's data directory; MovieLens is read, never copied or committed.
"""
