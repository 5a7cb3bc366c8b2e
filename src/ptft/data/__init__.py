"""Generated data for the embedded mini-study: a small fictional world, a pre-training corpus that states
its facts many times, and the task datasets whose answers need those facts.

Everything is a pure function of (config, seed): each generator draws from its own `random.Random` seeded
by a hash of the seed and what it is for, so outputs are byte-identical across runs and call orders.

The design that makes the study's effects appear:
- The world (countries and their cities, people with a home city and an occupation, animal species with a
  class, diet, habitat and colour, invented verbs with an English synonym) exists only in the corpus, so a
  checkpoint knows a fact only once pre-training has seen it often enough. Entity frequencies are skewed,
  so knowledge grows gradually over checkpoints.
- Every test split is about *held-out* entities (a quarter of the cities and the people living there, of the
  animal species, of the synonym pairs) that the training split never mentions in the role that decides
  the answer: fine-tuning teaches the task's format, and only pre-training can teach the test's facts.
- Only the paraphrase family has task-like text in the corpus (short "same meaning?" quizzes in a wording
  unlike the prompt formats), so base-model paraphrase accuracy rises over pre-training while NLI does not.
- Summaries copy the document's event (some ROUGE-L for a base model that copies) and add the person's
  occupation and country, which the document never states but the corpus does.

Modules by job: ptft.data.world (the world's types and the word helpers), ptft.data.corpus (the pre-training
corpus), ptft.data.tasksets (the task data sets and their cards), ptft.data.names (invented names and build_world,
above the other three because names avoid their templates' words), ptft.data.write (the writers of the corpus and
the data sets) and ptft.data.card (what every data card shares, also for hub and local sets). This package exports what scripts/, tests and the other modules import.
"""

from ptft.data.card import CARD_FILE, length_stats, target_summary
from ptft.data.corpus import CORPUS_KEYS, CORPUS_MIX, city_country_mentions, generate_corpus
from ptft.data.names import build_world
from ptft.data.tasksets import DOMAINS, SPEC_KEYS, SPLITS, Record, dataset_card, generate_dataset
from ptft.data.world import HELDOUT_FRACTION, WORLD_KEYS, Animal, City, Person, Synonym, World, sentences
from ptft.data.write import write_corpus, write_dataset

__all__ = [
    "CARD_FILE", "length_stats", "target_summary",
    "CORPUS_KEYS", "CORPUS_MIX", "city_country_mentions", "generate_corpus", "write_corpus",
    "DOMAINS", "SPEC_KEYS", "SPLITS", "Record", "dataset_card", "generate_dataset", "write_dataset",
    "HELDOUT_FRACTION", "WORLD_KEYS", "Animal", "City", "Person", "Synonym", "World", "build_world", "sentences",
]
