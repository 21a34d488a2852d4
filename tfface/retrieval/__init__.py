"""tfface.retrieval: a ScaNN gallery index with an exact TensorFlow reference.

* :class:`Index`: build from vectors and ids (int64 or strings), ``add``/``upsert``/``delete``,
  batched top-k ``search`` (ScaNN, or ``exact=True``), atomic ``save``/``load`` with a checksummed manifest.
* :class:`ScannConfig`, :func:`choose_config`: ScaNN's size rules (brute force < 20k, AH + rescoring
  < 100k, tree + AH + rescoring above), every knob overridable.
* :func:`exact_top_k`, :class:`ExactSearcher`: batched matrix-product search in TensorFlow.
* :func:`index_search_fn`, :func:`identify_with_index`: 1:N identification (MegaFace-style) on an index.
* :func:`export_vertex`, :func:`export_milvus`: gallery files for Vertex AI Vector Search and Milvus.
* :func:`parzen_search`: WSGAN's density scoring of sampled strong-space features over an index.

ScaNN itself is imported only when a ScaNN searcher is built or loaded.
"""

from tfface.retrieval.density import parzen_search
from tfface.retrieval.exact import ExactSearcher, exact_top_k
from tfface.retrieval.export import export_index, export_milvus, export_vertex
from tfface.retrieval.index import Index, SearchResult
from tfface.retrieval.manifest import IncompatibleIndexError
from tfface.retrieval.scann_config import ScannConfig, choose_config
from tfface.retrieval.search import IndexedIdentification, identify_with_index, index_search_fn

__all__ = [
    "ExactSearcher",
    "IncompatibleIndexError",
    "Index",
    "IndexedIdentification",
    "ScannConfig",
    "SearchResult",
    "choose_config",
    "exact_top_k",
    "parzen_search",
    "export_index",
    "export_milvus",
    "export_vertex",
    "identify_with_index",
    "index_search_fn",
]
