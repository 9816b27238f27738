"""The bulk of the demo: invented pairs, sized so that every stage has work (not a source: `_` names are
skipped by `python -m tests.make_demo`).

Three sources carry it, each after the rows its recipe test asserts: alpaca_gpt4 (general instructions,
one row per quality rule, exact and near duplicates within the source and of chatmed_consult rows),
chatmed_consult (medical questions) and csl (paper titles and abstracts). Each gets well over ten kept rows,
so that `train` holds rows out per source (a tenth, see train/data.py) and prints a before/after table.
The pairs are built from small word lists crossed so that no two differ by a word or two only: near
duplicates are the deliberate ones below, not accidents of a template.
"""

from __future__ import annotations

# Medical questions: symptom, who, how long, advice, department. Each symptom once, so no two answers share
# a sentence.
_SYMPTOMS = [
    ("咳嗽", "孩子", "三天", "多喝温水，保持室内空气湿润，夜里咳得厉害可以把枕头垫高一些", "呼吸内科"),
    ("头晕", "我妈妈", "一周", "起身时动作放慢，按时测量血压，饮食少盐，避免长时间低头看手机", "神经内科"),
    ("胃胀", "我", "半个月", "少吃多餐，饭后散步二十分钟，少喝碳酸饮料，晚饭不要吃得太晚", "消化内科"),
    ("腰疼", "我爸爸", "两个月", "避免久坐和搬重物，睡偏硬的床垫，每天做几次腰背伸展运动", "骨科"),
    ("皮肤瘙痒", "老人", "十来天", "洗澡水温不要太高，少用碱性肥皂，洗完涂抹保湿霜，穿宽松的棉质衣服", "皮肤科"),
    ("牙龈出血", "我", "好几天", "换用软毛牙刷，早晚认真刷牙并使用牙线，多吃新鲜蔬菜水果", "口腔科"),
    ("眼睛干涩", "我", "一个月", "每用眼四十分钟休息一会儿，多眨眼，必要时使用不含防腐剂的人工泪液", "眼科"),
    ("耳鸣", "我奶奶", "两周", "远离嘈杂环境，保证睡眠，少喝咖啡和浓茶，不要自行掏耳朵", "耳鼻喉科"),
    ("膝盖疼", "我", "三个星期", "暂停爬山和爬楼梯，控制体重，可以做直腿抬高练习锻炼大腿肌肉", "骨科"),
    ("便秘", "孩子", "四五天", "多吃富含膳食纤维的食物，多喝水，每天固定时间如厕，适当增加活动量", "消化内科"),
    ("心慌", "我", "几天", "避免熬夜和情绪激动，少喝含咖啡因的饮料，发作时记下时间和持续多久", "心内科"),
    ("口腔溃疡", "我", "一周多", "少吃辛辣和过烫的食物，注意休息，可以用淡盐水漱口缓解疼痛", "口腔科"),
    ("失眠多梦", "我爸爸", "一个多月", "睡前不看手机，下午以后不喝茶，白天适当晒太阳和运动", "睡眠门诊"),
    ("手脚冰凉", "我", "整个冬天", "注意保暖，睡前用温水泡脚，多做慢跑或跳绳这类让身体发热的运动", "中医科"),
    ("流鼻血", "孩子", "这两天", "让孩子身体前倾，捏住鼻翼压迫十分钟，不要仰头，室内注意加湿", "耳鼻喉科"),
    ("脚踝扭伤", "我", "昨天", "四十八小时内冰敷，抬高患肢减少走动，之后再改为热敷促进恢复", "骨科"),
    ("过敏性鼻炎", "我", "每年春天", "花粉季节外出戴口罩，回家后清洗鼻腔，必要时在医生指导下用药", "变态反应科"),
    ("体重突然下降", "我妈妈", "三个月", "记录每天的饮食和体重变化，尽快查血糖和甲状腺功能", "内分泌科"),
    ("尿频", "我爸爸", "半年", "睡前两小时少喝水，少喝酒和咖啡，注意记录夜里起夜的次数", "泌尿外科"),
    ("颈椎不舒服", "我", "很久", "每工作一小时活动一下脖子，调整显示器高度与视线平齐，枕头不要太高", "康复科"),
    ("食欲不振", "老人", "两周", "饭菜做得清淡软烂，少量多餐，饭前适当散步，注意口腔和牙齿是否有问题", "老年科"),
    ("湿疹", "孩子", "一个月", "穿纯棉衣物，洗澡时间不要太长，洗后立即涂抹润肤霜，剪短指甲防止抓破", "皮肤科"),
    ("偏头痛", "我", "反复半年", "记录每次发作前吃过的食物和睡眠情况，规律作息，避免强光和噪音", "神经内科"),
    ("打鼾", "我爸爸", "多年", "控制体重，睡觉时侧卧，睡前不要喝酒，如有憋醒应做睡眠监测", "睡眠门诊"),
]


def medical_pairs() -> list[tuple[str, str]]:
    """(question, answer) of chatmed_consult's bulk."""
    return [
        (f"{who}{symptom}{time}了，应该怎么办？", f"{advice}。如果症状没有缓解或者加重，建议到{dept}就诊。")
        for symptom, who, time, advice, dept in _SYMPTOMS
    ]


# Paper titles and abstracts: method x object, crossed diagonally so that no method or object repeats in a
# run of rows.
_METHODS = ["随机森林", "长短期记忆网络", "注意力机制", "图神经网络", "支持向量机", "迁移学习"]
_OBJECTS = [
    ("小麦产量", "气象和土壤数据", "农业"), ("城市空气质量", "监测站小时数据", "环境"), ("电网负荷", "用电采集数据", "电力"),
    ("桥梁裂缝", "无人机拍摄的图像", "土木"), ("学生成绩", "在线学习平台日志", "教育"), ("股票波动", "交易所分钟行情", "金融"),
    ("中文情感倾向", "电商评论语料", "语言"), ("糖尿病风险", "体检记录", "医学"),
]


def paper_pairs() -> list[tuple[str, str]]:
    """(title, abstract) of csl's bulk: 24 papers."""
    out = []
    for i in range(24):
        method = _METHODS[i % len(_METHODS)]
        obj, data, field_ = _OBJECTS[(i * 5 + i // len(_OBJECTS)) % len(_OBJECTS)]
        out.append((
            f"基于{method}的{obj}预测方法研究",
            f"为提高{obj}预测的准确性，本文以{data}为基础，构建了{method}模型，"
            f"并与传统方法进行了比较。实验表明，该方法在{field_}领域的多个数据集上误差明显降低。",
        ))
    return out


# General instructions for alpaca_gpt4: a task per line, each its own answer.
GENERAL = [
    ("介绍一下长城的历史。", "长城始建于春秋战国时期，秦朝把各国的城墙连接起来，明朝又进行了大规模修筑，现存的大部分是明长城。"),
    ("解释什么是光合作用。", "光合作用是绿色植物利用阳光，把二氧化碳和水转化为有机物并释放氧气的过程。"),
    ("给出三个保持专注的方法。", "一是关掉手机通知；二是把大任务拆成小步骤；三是每工作二十五分钟休息五分钟。"),
    ("用简单的话说明通货膨胀。", "通货膨胀就是物价普遍持续上涨，同样多的钱能买到的东西变少了。"),
    ("推荐一本适合初学者的编程书。", "可以从《Python编程：从入门到实践》开始，书中例子简单，还有完整的小项目。"),
    ("描述一下春天的西湖。", "春天的西湖柳枝吐绿，桃花盛开，苏堤上游人如织，湖面上小船慢慢划过。"),
    ("怎样做一碗番茄鸡蛋面？", "先把番茄炒出汁，加水煮开后下面条，面快熟时淋入打散的鸡蛋，最后加盐和葱花。"),
    ("比较一下火车和飞机出行的优缺点。", "火车准点、可以看风景、进站方便；飞机速度快，适合远距离，但要提前到机场安检。"),
    ("写一句鼓励考生的话。", "付出的每一份努力都会被看见，沉着应考，你一定能发挥出最好的水平。"),
    ("为什么冬天容易感冒？", "冬天室内外温差大，人们常待在通风不好的房间里，病毒更容易传播，身体抵抗力也容易下降。"),
    ("列举四种可再生能源。", "太阳能、风能、水能和地热能都是可再生能源，它们可以不断得到补充。"),
    ("怎样给植物浇水比较合适？", "见干见湿，土表干了再浇透，夏天早晚浇水，冬天减少次数，避免盆里积水烂根。"),
    ("解释一下什么是区块链。", "区块链是一种按时间顺序把数据块连接起来的分布式账本，每个节点都保存副本，难以被篡改。"),
    ("给一家新开的咖啡店想一个名字。", "可以叫“慢时光咖啡”，寓意在忙碌的生活里给自己留一段安静的时间。"),
    ("总结一下锻炼身体的好处。", "坚持锻炼能增强心肺功能，控制体重，改善睡眠，还能缓解压力、让心情变好。"),
    ("如何提高英语听力？", "每天坚持听二十分钟英文材料，先泛听再精听，把听不懂的句子写下来反复跟读。"),
    ("说说熊猫的生活习性。", "大熊猫生活在四川等地的竹林里，主要以竹子为食，每天要花十几个小时进食和睡觉。"),
    ("怎样写好一封求职信？", "开头说明应聘的职位，中间用具体经历说明自己为什么合适，结尾表达面试意愿并留下联系方式。"),
    ("地球为什么会有四季？", "地球自转轴是倾斜的，绕太阳公转时不同地区接收到的阳光角度和时长发生变化，于是有了四季。"),
    ("给出一个节约用水的建议。", "洗菜的水可以留下来浇花或冲厕所，刷牙时关掉水龙头，一年能省下不少水。"),
    ("简述造纸术的发明。", "东汉的蔡伦改进了造纸方法，用树皮、麻头、破布和旧渔网造纸，让纸张变得便宜易得。"),
    ("如何缓解工作压力？", "合理安排任务的先后顺序，学会拒绝不必要的事情，下班后运动或和朋友聊聊天。"),
    ("解释成语“画蛇添足”的意思。", "画蛇添足比喻做了多余的事，非但无益，反而把事情弄糟了。"),
    ("推荐一个周末亲子活动。", "可以带孩子去郊外的农场摘草莓，既能亲近自然，又能让孩子了解水果是怎么长出来的。"),
]

_LONG_PASSAGE = (
    "黄河发源于青藏高原巴颜喀拉山北麓，呈几字形流经九个省区，最后在山东东营注入渤海。"
    "黄河中游流经黄土高原，河水携带大量泥沙，是世界上含沙量最大的河流之一。"
)

# One row per quality rule that rows built from upstream files can trip, by the reason it gives. The three
# rules that cannot fire on rows normalize built (empty_query, empty_positive: normalize drops empty texts;
# negative_equals_pair: normalize removes such negatives) have no row here.
QUALITY = {
    "query_equals_positive": ("今天天气真好", "今天天气真好！"),
    "query_too_short": ("诗", "床前明月光，疑是地上霜。"),
    "positive_too_short": ("请用一个字回答：好不好？", "好"),
    "query_too_long": ("请阅读下面的材料并概括它的主要内容。" + "材料：城市的清晨从第一班公交车开始，" * 60, "材料讲的是城市的清晨。"),
    "positive_too_long": ("请写一篇关于黄河的长文。", _LONG_PASSAGE * 110),
    "query_too_similar": (_LONG_PASSAGE + "请问", _LONG_PASSAGE),
    "boilerplate": ("你能帮我预测明天的股票走势吗？", "作为一个AI语言模型，我无法预测股票市场的走势，建议咨询专业的投资顾问。"),
    "query_no_chinese": ("Write one sentence about the sea.", "大海在阳光下闪闪发光，浪花一层层拍打着沙滩。"),
    "positive_no_chinese": ("把“谢谢你的帮助”翻译成英文。", "Thank you for your help."),
    "query_repeated_chars": ("哈哈哈哈哈哈哈哈哈哈哈哈哈哈这个笑话好笑吗", "这个笑话的笑点在于谐音，有的人觉得好笑，有的人不觉得。"),
    "positive_repeated_chars": ("说一个拟声词。", "轰隆隆隆隆隆隆隆隆隆隆隆隆隆，打雷了。"),
    "query_repeated_3grams": ("好吃好吃好吃好吃好吃好吃好吃好吃好吃吗", "这家店的招牌菜确实很受欢迎，尤其是红烧肉。"),
    "positive_repeated_3grams": ("用叠词形容一下下雨。", "下呀下呀下呀下呀下呀下呀下呀下呀下呀下呀。"),
    "query_special_chars": ("问？？！！……【】《》", "请把问题写完整，这样才能给出有用的回答。"),
    "positive_special_chars": ("画一个表情。", "笑★☆◆◇■□▲△●○◎"),
    "query_language": ("東京の天気はどうですか", "东京今天晴，最高气温二十度。"),
    "positive_language": ("用日语说“早上好”。", "日本語では「おはようございます」と言います"),
}

# Duplicates. Within alpaca_gpt4: an exact copy up to punctuation, width and spaces, and a near copy of another
# row (the same instruction, one character of its answer changed). Across sources: a copy of a chatmed_consult question
# and answer, exact up to punctuation, and one near (one word changed). The evaluation file
# (m3e_data/demo/_eval/queries.dev.tsv) holds one of GENERAL's instructions exactly and one nearly.
EXACT_COPY = ("介绍一下长城的历史", "长城始建于春秋战国时期 秦朝把各国的城墙连接起来，明朝又进行了大规模修筑；现存的大部分是明长城")
NEAR_COPY = (
    "解释一下什么是区块链。",
    "区块链是一种按时间顺序把数据块连接起来的分布式账本，每个节点都保留副本，难以被篡改。",
)


def cross_copies() -> list[tuple[str, str]]:
    """Rows of chatmed_consult's bulk as alpaca_gpt4 rows: one exact (punctuation and width changed), one
    near (one word of the answer changed)."""
    pairs = medical_pairs()
    q0, a0 = pairs[0]
    q1, a1 = pairs[1]
    return [
        (q0.replace("，", ",").replace("？", "?"), a0.replace("。", ".")),
        (q1, a1.replace("按时测量血压", "定时测量血压")),
    ]


# The evaluation file's rows (C-MTEB retrieval style: query and its positives): one query equal to a
# GENERAL instruction after normalisation, one passage near a GENERAL answer (two characters changed), and
# two that match nothing.
EVAL_ROWS = [
    {"query": "如何提高英语听力", "positive": ["每天听英文广播。"]},
    {"query": "四季是怎样形成的？",
     "positive": ["地球自转轴是倾斜的，绕太阳公转时不同地区接收到的阳光角度和时长发生变化，因此有了四季。"]},
    {"query": "什么是机器学习？", "positive": ["机器学习是让计算机从数据中学习规律的方法。"]},
    {"query": "北京有哪些值得去的博物馆？", "positive": ["故宫博物院、中国国家博物馆和首都博物馆都值得一去。"]},
]
