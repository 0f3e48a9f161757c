"""bleprov's fuzzing campaign, kept in the repository (docs/fuzzing.md).

- :mod:`fuzz.harnesses`: one harness per decoder of untrusted input, and the table of
  them (what each may raise, where its input comes from);
- :mod:`fuzz.guard`: runs one input and says what it found (an exception the harness does
  not allow, or more CPU time than its bound);
- :mod:`fuzz.material`: the fixed keys, certificates and secrets harnesses decode against
  (``fuzz/fixtures/``);
- ``fuzz/corpus/<harness>/``: seeds recorded from real sessions (:mod:`fuzz.capture`) and
  the findings' minimal inputs (:mod:`fuzz.regressions`, ``regress-*``);
- ``fuzz/cbor.dict``: the CBOR dictionary both mutators use;
- :mod:`fuzz.known`: the findings known so far and which are still open;
- ``python -m fuzz`` (``make fuzz``): the long campaign, atheris in one process per
  harness; :mod:`fuzz.mutate`: the pure-Python mutator of ``make test``'s short run
  (tests/fuzz) and of the campaign where atheris is missing.

Not part of the bleprov package: nothing here is installed.
"""
