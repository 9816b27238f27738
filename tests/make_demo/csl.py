"""csl as neuclir/csl holds it (a script repo): gzipped JSON lines data/csl.jsonl.gz, rows {doc_id, title,
abstract, keywords: list, category, category_eng, discipline, discipline_eng}, beside the English
translation data/csl.gt.063023.jsonl.gz that the recipe must not read. Synthetic rows: the three the recipe
test asserts, then the demo's bulk (tests/make_demo/_bulk.py)."""

import gzip

from tests.make_demo import jsonl
from tests.make_demo._bulk import paper_pairs

ROWS = [
    {"doc_id": "0", "title": "基于深度学习的水稻病害图像识别方法",
     "abstract": "针对水稻病害识别准确率低的问题，提出一种基于卷积神经网络的识别方法，在自建数据集上准确率达到95%。",
     "keywords": ["深度学习", "水稻病害", "图像识别"], "category": "农学", "category_eng": "Agronomy",
     "discipline": "农学", "discipline_eng": "Agriculture"},
    {"doc_id": "1", "title": "城市轨道交通客流预测研究",
     "abstract": "以某市地铁刷卡数据为基础，建立时间序列模型预测短时客流，为运营调度提供依据。",
     "keywords": ["轨道交通", "客流预测"], "category": "交通运输工程", "category_eng": "Transportation Engineering",
     "discipline": "工学", "discipline_eng": "Engineering"},
    # A paper without an abstract: empty_text.
    {"doc_id": "2", "title": "古代汉语虚词研究综述", "abstract": "", "keywords": ["虚词"], "category": "中国语言文学",
     "category_eng": "Chinese Language and Literature", "discipline": "文学", "discipline_eng": "Literature"},
]
BULK = [
    {"doc_id": str(3 + i), "title": title, "abstract": abstract, "keywords": [], "category": "", "category_eng": "",
     "discipline": "", "discipline_eng": ""}
    for i, (title, abstract) in enumerate(paper_pairs())
]
ENGLISH = [
    {"doc_id": "0", "title": "Image recognition of rice diseases based on deep learning",
     "abstract": "A convolutional neural network method for rice disease recognition.", "keywords": ["deep learning"],
     "category": "Agronomy", "category_eng": "Agronomy", "discipline": "Agriculture", "discipline_eng": "Agriculture"},
]


def write(root):
    (root / "data").mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the archive byte-identical between regenerations.
    for name, rows in (("csl.jsonl.gz", ROWS + BULK), ("csl.gt.063023.jsonl.gz", ENGLISH)):
        with open(root / "data" / name, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
            fh.write(jsonl(rows).encode("utf-8"))
