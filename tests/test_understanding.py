"""Table-driven tests of the message-understanding rules, and of the command line.

The sentences below were written for these tests (they are not lines of the evaluation sample):
how villagers in Shaanxi, Shanxi, Chongqing and elsewhere actually type, with dialect words
(娃, 婆姨, 老汉, 屋头, 莫得, 冷子, 额家), misspellings (脑埂, 住员, 倒蹋, 缀学), negations,
hypotheticals, questions about a topic, progress queries, greetings and mixed messages.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from handlers.understanding import Intent, Understanding, Vocabulary, classify
from storage.enums import RiskType

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "eval" / "reports_dev.jsonl"

R, Q, P, G, OTHER = "report", "question", "progress", "greeting", "other"

# (text, intent, risk types (code names, for reports), urgent)
TABLE: list[tuple[str, str, set[str], bool]] = [
    # --- 因病: reports
    ("我爸脑梗住院了 押金交不起", R, {"illness"}, True),
    ("老伴查出来肺癌 医生说要化疗 家里实在拿不出钱", R, {"illness"}, True),
    ("俺妈得了尿毒症 一个礼拜透析三次 钱都花光了", R, {"illness"}, True),
    ("我婆姨害病好几个月了 天天吃药 药钱贵得很", R, {"illness"}, False),
    ("娃发高烧送到县医院了 要交三千押金", R, {"illness"}, True),
    ("老汉中风了 半边身子动不了", R, {"illness"}, True),
    ("我有高血压糖尿病 每个月买药要好几百", R, {"illness"}, False),
    ("我爸在重症监护室 一天好几千 借遍了亲戚", R, {"illness"}, True),
    ("老妈住院 手术费还差两万", R, {"illness"}, True),
    ("娃他爹肝硬化 肚子胀得老大 不想去医院 怕花钱", R, {"illness"}, False),
    ("俺家娃他娘得了那个癌 在省里住着院 钱跟不上", R, {"illness"}, True),
    ("额家屋里人病得起不了炕", R, {"illness"}, False),
    ("我妈脑埂住员了", R, {"illness"}, True),
    # --- 因病: negation and questions about the topic
    ("我爸没有住院 就是在家吃药 药费太贵了", R, {"illness"}, False),
    ("不是住院 是门诊 慢性病能报销吗", Q, set(), False),
    ("怎么申报住院报销", Q, set(), False),
    ("住院报销比例是多少", Q, set(), False),
    ("大病保险和医疗救助有啥区别", Q, set(), False),
    ("慢性病卡怎么办理", Q, set(), False),
    ("脱贫户住院先诊疗后付费还有吗", Q, set(), False),
    ("癌症病人能申请临时救助吗", Q, set(), False),
    ("万一住院了钱不够咋办", Q, set(), False),
    ("假如家里有人得了大病 能享受什么政策", Q, set(), False),
    # --- 因残
    ("我儿子是脑瘫 一直没人照顾", R, {"disability"}, False),
    ("老汉前年从房上摔下来 腰摔断了 现在瘫在炕上", R, {"accident", "disability"}, False),
    ("我是二级肢体残疾 能享受啥补贴", Q, set(), False),
    ("残疾证怎么办", Q, set(), False),
    ("屋里人眼睛看不见 娃还小 全靠我一个人", R, {"disability"}, False),
    ("屋头老汉瘫了 莫得钱医 咋个办哦", R, {"disability"}, False),
    ("婆姨跟人跑了 老娘瘫在床上 我还得照顾娃", R, {"labor_shortage", "disability"}, False),
    # --- 因学
    ("娃考上大学了 学费一万多 家里拿不出来", R, {"education"}, False),
    ("孩子辍学在家 说家里没钱不念了", R, {"education"}, True),
    ("我家两个娃都在上高中 一年光生活费就好几千 负担太重", R, {"education"}, False),
    ("娃缀学了在家放羊", R, {"education"}, True),
    ("我屋头幺儿读书的钱凑不齐", R, {"education"}, False),
    ("大娃今年高考 二娃上初中 婆姨又病着 钱实在不够用", R, {"education", "illness"}, False),
    ("雨露计划怎么申请", Q, set(), False),
    ("上大学有没有助学贷款", Q, set(), False),
    ("孩子上大学能申请什么补助", Q, set(), False),
    # --- 因灾
    ("昨晚下冷子 苹果全打烂了 一年白干", R, {"disaster"}, False),
    ("发大水把房子冲垮了 一家人住在村委会", R, {"disaster", "housing"}, True),
    ("山上滑坡 把我家后墙推倒了", R, {"disaster", "housing"}, True),
    ("今年天旱 玉米基本绝收", R, {"disaster"}, False),
    ("暴雨把院墙冲塌了 屋里进水了", R, {"disaster", "housing"}, True),
    ("受灾了能领多少补助", Q, set(), False),
    ("如果遇到洪水房子被冲了 政府管不管", Q, set(), False),
    ("要是房子被水冲了能补多少", Q, set(), False),
    # --- 因意外事故
    ("我男人在工地上摔下来了 腿断了 现在在医院", R, {"accident", "illness"}, True),
    ("娃他爸开三轮车翻到沟里了 人还在抢救", R, {"accident", "illness"}, True),
    ("老汉被车撞了 肇事的跑了 医药费没人出", R, {"accident", "illness"}, True),
    ("儿子在矿上出事了 手被机器轧了", R, {"accident"}, True),
    ("家里着火了 房子烧了一半", R, {"accident", "housing"}, True),
    ("屋里老人煤气中毒 送医院了", R, {"accident", "illness"}, True),
    ("工伤认定需要什么材料", Q, set(), False),
    # --- 因产业失败
    ("我家养的猪得了猪瘟 死了二十多头 贷款还不上", R, {"industry_failure"}, False),
    ("今年种的猕猴桃卖不出去 烂在地里 赔了好几万", R, {"industry_failure"}, False),
    ("合作社倒闭了 我入股的钱也打了水漂", R, {"industry_failure"}, False),
    ("花椒价格跌得厉害 一斤才卖几块钱 本钱都收不回来", R, {"industry_failure"}, False),
    ("产业帮扶资金怎么申请", Q, set(), False),
    ("养牛能贷多少款", Q, set(), False),
    # --- 因务工就业不稳
    ("厂子倒闭了 我回来半年了还没找到活", R, {"unemployment"}, False),
    ("在外面打工的工钱要不回来 老板跑了", R, {"unemployment"}, False),
    ("疫情后工地没活干 一家四口就靠我一个人", R, {"unemployment"}, False),
    ("娃在外头打工被辞退了 现在在家待着", R, {"unemployment"}, False),
    ("公益岗位怎么报名", Q, set(), False),
    ("我儿子在外头打工 挣得还行", Q, set(), False),
    # --- 缺劳动力
    ("家里就剩我们老两口 都七十多了 地也种不动了", R, {"labor_shortage"}, False),
    ("男人走了三年了 我一个人带两个娃", R, {"labor_shortage"}, False),
    ("我是五保户 一个人过 年纪大了干不动了", R, {"labor_shortage"}, False),
    ("缺劳力的家庭有什么帮扶", Q, set(), False),
    ("我老汉上个月走了 家里就剩我和两个娃 没人挣钱", R, {"labor_shortage"}, True),
    # --- 住房安全
    ("房子昨晚塌了一间 娃没地方住", R, {"housing"}, True),
    ("我家土坯房墙上裂了大口子 下雨就漏", R, {"housing"}, False),
    ("窑洞顶上掉土 怕是要塌了", R, {"housing"}, True),
    ("咱家窑塌了半边 人没事 就是没处住了", R, {"housing"}, True),
    ("房子倒蹋了", R, {"housing"}, True),
    ("危房改造的补助标准是多少", Q, set(), False),
    ("房子不是塌了 是裂了几道缝", R, {"housing"}, False),
    ("房子没塌 就是漏雨 能不能给修修", R, {"housing"}, False),
    ("我们村危房都改造完了吗", Q, set(), False),
    # --- 饮水安全
    ("井干了半个月 全村都没水吃 要到山下去挑水", R, {"water"}, True),
    ("自来水管冻裂了 这几天都是买水喝", R, {"water"}, False),
    ("我家的水有股怪味 喝了拉肚子", R, {"water"}, False),
    ("水窖没水了 牲口都没水喝", R, {"water"}, True),
    ("农村饮水安全有什么标准", Q, set(), False),
    # --- 其他
    ("我被人骗了五万块 是借的钱", R, {"other"}, False),
    ("家里断粮两天了 娃饿得直哭", R, {"other"}, True),
    ("老汉喝了酒把家里钱输光了 日子过不下去了", R, {"other"}, True),
    ("家里没人生病 就是没活干 钱不够花", R, {"unemployment"}, False),
    # --- progress
    ("我的申报到哪一步了", P, set(), False),
    ("上次报的房子的事咋样了 怎么还没人来看", P, set(), False),
    ("进度", P, set(), False),
    ("我前几天申请的临时救助批下来没", P, set(), False),
    ("查一下我家的申请", P, set(), False),
    # --- greetings and other
    ("你好", G, set(), False),
    ("谢谢干部 辛苦了", G, set(), False),
    ("好的 收到", G, set(), False),
    ("在吗？", G, set(), False),
    ("感谢政府 感谢党", G, set(), False),
    ("👍👍", G, set(), False),
    ("哈哈哈", OTHER, set(), False),
    ("1", OTHER, set(), False),
    # --- mixed: a report that also asks
    ("我爸住院了 押金交不起 能报销多少", R, {"illness"}, True),
    ("房子塌了 危房改造怎么申请", R, {"housing"}, True),
    ("娃辍学了 雨露计划能不能帮", R, {"education"}, True),
    ("我家猪死了一半 有没有补贴", R, {"industry_failure"}, False),
    ("老汉摔断了腿 工伤保险能赔吗", R, {"accident"}, True),
    # --- cadres' policy questions
    ("监测对象的识别程序是什么", Q, set(), False),
    ("风险消除需要满足哪些条件", Q, set(), False),
    ("突发严重困难户怎么认定", Q, set(), False),
    ("防返贫监测的收入标准是多少", Q, set(), False),
    ("易地搬迁户能享受哪些政策", Q, set(), False),
    ("小额贷款能贷多少", Q, set(), False),
    ("不是要申报 就是问问低保的事", Q, set(), False),
    # --- personal data does not confuse the reading
    ("我叫王秀英 身份证61272419800101123X 电话138 1234 5678 我家房子塌了", R, {"housing"}, True),
]


# A second table, written after the vocabulary without looking at the rules' output, to measure
# how the rules generalise. Its first run gave report-vs-not 0.900, urgent recall 0.789,
# risk-type micro-F1 0.786; the vocabulary gaps it showed were then filled in general form
# (e.g. every "price fell" phrasing, not the one line). It is held to the bars in aggregate,
# not line by line: some of its labels are honestly debatable (冻死 sheep: 因灾 or 因产业失败?).
# Some labels were revised once to the dev sample's labelling convention (hospital care after an
# accident is also 因病; funeral costs are 其他; every aspect named counts, 俩娃上学 included).
FRESH: list[tuple[str, str, set[str], bool]] = [
    ("俺爹昨天在地里晕倒了 拉到镇医院说是脑出血 要转市里", R, {"illness"}, True),
    ("我老婆生娃大出血 在医院抢救 欠了医院五万多", R, {"illness"}, True),
    ("家里老人常年吃药 一个月药钱七八百 我们在外打工挣得少", R, {"illness", "unemployment"}, False),
    ("我孙子白血病 化疗一次就要两三万 实在扛不住了", R, {"illness"}, True),
    ("新农合一年交多少钱", Q, set(), False),
    ("门诊慢特病怎么报销 要去哪里办", Q, set(), False),
    ("我们村王老汉住院了没人管 他儿子在外地", R, {"illness"}, True),
    ("我腿有残疾 走路不方便 种不了地", R, {"disability", "labor_shortage"}, False),
    ("女儿先天性心脏病 医生说必须做手术", R, {"illness"}, True),
    ("残疾人两项补贴每个月多少钱", Q, set(), False),
    ("我哥是精神残疾 发病的时候打人 家里人都不敢出门干活", R, {"disability"}, False),
    ("两个娃上学一年要一万多 实在供不起了", R, {"education"}, False),
    ("娃说不想念书了 要出去打工 才十五岁", R, {"education"}, True),
    ("高中生有没有免学费的政策", Q, set(), False),
    ("前天晚上刮大风 我家大棚全刮烂了", R, {"disaster"}, False),
    ("连着下了半个月雨 后山滑坡把路和房子都埋了", R, {"disaster", "housing"}, True),
    ("今年霜冻 樱桃全冻死了 一分钱没收入", R, {"disaster"}, False),
    ("我家窑洞让雨泡塌了 一家五口挤在邻居家", R, {"housing"}, True),
    ("地震后墙上全是缝 晚上不敢在屋里睡", R, {"housing", "disaster"}, True),
    ("危房鉴定要找谁", Q, set(), False),
    ("我家房子是七几年盖的土房 一下雨就漏 墙也歪了", R, {"housing"}, False),
    ("老汉骑摩托车摔到沟里 头上缝了十几针 还在住院", R, {"accident", "illness"}, True),
    ("我在砖厂干活被砸了脚 老板不给看病钱", R, {"accident", "illness"}, True),
    ("娃下河游泳差点淹死 现在还在医院", R, {"accident", "illness"}, True),
    ("昨晚家里失火 粮食和衣服全烧了", R, {"accident"}, True),
    ("养了三十只羊 冬天冻死了一大半", R, {"industry_failure"}, False),
    ("种了二十亩土豆 价钱太低 连化肥钱都不够", R, {"industry_failure"}, False),
    ("我贷款开的农家乐 疫情关门一年了 贷款还不上", R, {"industry_failure"}, False),
    ("小额信贷到期了还不上能不能续贷", Q, set(), False),
    ("在工地干了一年 工头卷钱跑了 一分钱没拿到", R, {"unemployment"}, False),
    ("厂里裁员我被裁了 家里还有两个娃上学", R, {"unemployment", "education"}, False),
    ("外出务工有没有交通补贴", Q, set(), False),
    ("就业帮扶车间招不招人", Q, set(), False),
    ("我七十八了 老伴八十 儿子前年车祸没了 地没人种", R, {"labor_shortage"}, False),
    ("家里三口人两个是病人 就我一个能干活的 还要照顾他们出不去", R, {"labor_shortage", "illness"}, False),
    ("村里的水管子坏了半个月了 全靠拉水吃", R, {"water"}, False),
    ("我们这井水发黄 娃喝了老拉肚子", R, {"water"}, False),
    ("天旱井里没水了 人和牲口都没水喝", R, {"water", "disaster"}, True),
    ("安全饮水工程是谁管的", Q, set(), False),
    ("男人出去打工三年没音讯了 家里啥都没有", R, {"other"}, True),
    ("借了高利贷 天天有人上门要债", R, {"other"}, False),
    ("我申报的那个事有人管没有", P, set(), False),
    ("上个月报的危房 咋到现在都没人来看", P, set(), False),
    ("请问我家的申请审核到哪里了", P, set(), False),
    ("谢谢你们帮我家修房子", G, set(), False),
    ("早上好", G, set(), False),
    ("好嘞 晓得了", G, set(), False),
    ("???", OTHER, set(), False),
    ("[图片]", OTHER, set(), False),
    ("我爸肺癌晚期在医院 医药费能不能先欠着", R, {"illness"}, True),
    ("家里房子塌了 临时救助能给多少钱", R, {"housing"}, True),
    ("娃考上大学了 学费都没着落 有没有助学金", R, {"education"}, False),
    ("没有生病 也没有残疾 就是想问问低保咋申请", Q, set(), False),
    ("房子倒是没塌 就是墙皮掉了", R, {"housing"}, False),
    ("要是遇到车祸致残了 能享受哪些帮扶", Q, set(), False),
    ("一户多人得大病的怎么认定", Q, set(), False),
    ("监测户发生风险后多少天内要完成核查", Q, set(), False),
    ("婆姨病了三年了 光看病就花了十几万 欠了一屁股债", R, {"illness"}, False),
    ("我妈摔了一跤 骨头断了 在家躺着动不了", R, {"accident"}, True),
    ("家里揭不开锅了 救救我们", R, {"other"}, True),
]


# A third table, written after the changes the dev sample prompted, again before running the
# rules on it. First run: report-vs-not 0.883, urgent recall 0.737, risk-type micro-F1 0.769,
# mostly phrasings no row knew (肋骨断了, 被辞了, 停了五天). That led to morphological patterns
# (body part + 断, damage verb + house, wages withheld) and the narrative backoff, not to rows
# copied from these lines. Held to the bars in aggregate.
FRESH2: list[tuple[str, str, set[str], bool]] = [
    (
        "我是五组的李大姐 老公前天晚上突发心梗走了 家里两个娃还在念书 后事都不知道咋办",
        R,
        {"other", "education"},
        True,
    ),
    (
        "俺们组张家老两口 房子后墙塌了半边 现在住在牛棚里 麻烦你们来看看",
        R,
        {"housing", "labor_shortage"},
        True,
    ),
    ("爸爸肺部有阴影 县医院让去省城复查 路费都凑不够", R, {"illness"}, True),
    ("媳妇生二胎难产 大人孩子都在ICU 一天八千多", R, {"illness"}, True),
    ("老娘糖尿病并发症 眼睛快看不见了 每个月打胰岛素要好几百", R, {"illness", "disability"}, False),
    (
        "家里有个智力残疾的弟弟 爹妈都七十了 全靠我照顾 我也出不去挣钱",
        R,
        {"disability", "labor_shortage"},
        False,
    ),
    ("娃今年考上了西安的大学 学费住宿费加起来一万二 助学贷款还没批下来 开学就要交", R, {"education"}, False),
    ("初三的女子说啥都不去学校了 在家哭 老师也劝不回来", R, {"education"}, True),
    ("两个娃在县城上学 租房子陪读 一年开销两万多 地也没人种", R, {"education", "labor_shortage"}, False),
    ("山洪把河边的地全冲了 种的玉米一棵没剩", R, {"disaster"}, True),
    ("冰雹把一园子苹果打得稀烂 今年白干了 还欠着农资店的钱", R, {"disaster"}, False),
    ("连下了一个礼拜暴雨 窑洞后面渗水 裂了一条大缝 晚上不敢睡", R, {"disaster", "housing"}, True),
    ("村里发大水 我家一楼全淹了 家具电器都泡坏了", R, {"disaster", "housing"}, True),
    ("老汉上山砍柴滚下来 肋骨断了三根 在镇卫生院", R, {"accident", "illness"}, True),
    ("儿子骑电动车被货车撞了 昏迷三天了 医院催着交钱", R, {"accident", "illness"}, True),
    ("干活时候被蛇咬了 腿肿得老粗 送到县医院了", R, {"accident", "illness"}, True),
    ("家里电线老化起火 烧了两间房 人没事", R, {"accident", "housing"}, True),
    ("去年养的两百只鸡 得了鸡瘟全死了 本钱五六万都赔进去了", R, {"industry_failure"}, False),
    ("核桃今年才三块钱一斤 连雇人摘的钱都不够", R, {"industry_failure"}, False),
    ("跟着合作社种的中药材 说好的回收 现在没人来收了 全砸手里了", R, {"industry_failure"}, False),
    ("在浙江厂里干了五年 厂子搬走了 我们这些人都被辞了", R, {"unemployment"}, False),
    ("年底了工地老板还欠我们三个月工钱 电话也不接", R, {"unemployment"}, False),
    ("疫情封控出不了门 家里断了收入 房贷也还不上", R, {"unemployment"}, False),
    ("我和老伴都八十多了 儿子在外地不管 种不了地 也没啥收入", R, {"labor_shortage"}, False),
    ("男人坐牢了 我一个人带三个娃 还有个瘫在床上的婆婆", R, {"other", "labor_shortage", "disability"}, False),
    ("家里吃水要走二里路去挑 冬天路滑老人挑不动", R, {"water"}, False),
    ("自来水一个月停了三回 这回都停了五天了 只能喝窖里的雨水", R, {"water"}, True),
    ("这段时间水龙头出来的水是黄的 烧开了有一层渣", R, {"water"}, False),
    ("被网上的人骗了三万 说是办贷款要交保证金", R, {"other"}, False),
    ("老汉去世快一年了 家里欠的债还没还完", R, {"other"}, False),
    ("我们村有户人家 男人死了 女人带着娃 三天没吃上饭了", R, {"other", "labor_shortage"}, True),
    ("大病救助的标准是什么", Q, set(), False),
    ("残疾人能不能申请公益岗", Q, set(), False),
    ("孩子在外地上大学 户口在村里 能享受雨露计划吗", Q, set(), False),
    ("受灾后房屋重建补贴找哪个部门", Q, set(), False),
    ("因意外事故致贫的怎么纳入监测", Q, set(), False),
    ("产业奖补一亩地补多少", Q, set(), False),
    ("务工交通补助什么时候发", Q, set(), False),
    ("饮水不安全的户要怎么整改", Q, set(), False),
    ("村里的低保名额是怎么定的", Q, set(), False),
    ("如果家里有人突然生了大病 第一步该找谁", Q, set(), False),
    ("监测户每年要核查几次", Q, set(), False),
    ("脱贫不稳定户和边缘易致贫户有啥区别", Q, set(), False),
    ("家里没人生病也没受灾 能不能申请低保", Q, set(), False),
    ("上个月报的我爸住院的事 到现在也没人打电话", P, set(), False),
    ("你好 我前两天提交的申请审核通过了吗", P, set(), False),
    ("我的申报为啥被退回来了", P, set(), False),
    ("查询进度", P, set(), False),
    ("非常感谢村干部的帮忙", G, set(), False),
    ("谢谢 已经收到钱了", G, set(), False),
    ("hello", G, set(), False),
    ("🙏🙏🙏", G, set(), False),
    ("。。。", OTHER, set(), False),
    ("我爸住院了 花了三万多 大病保险能报多少", R, {"illness"}, True),
    ("窑洞塌了 能不能申请危房改造", R, {"housing"}, True),
    ("娃不念书了 有什么办法能让他回去上学", R, {"education"}, True),
    ("羊死了一半 保险公司能赔吗", R, {"industry_failure"}, False),
    ("我男人工地上摔伤了 老板不管 工伤怎么认定", R, {"accident"}, True),
    ("身份证：610103198506201817 手机：15912345678 我家娃白血病住院 需要帮助", R, {"illness"}, True),
    ("房子没有塌 只是有些裂缝 想问问危房改造的条件", Q, set(), False),
]


# A fourth table, written before running anything on it, used to decide about embeddings (see
# the module docstring of handlers.understanding). First run of the rules: report-vs-not 0.982,
# urgent recall 0.812, urgent precision 0.929, risk-type micro-F1 0.901. It also exposed a bug:
# the 120 (ambulance) inside an ID number; PII is now masked before reading.
FRESH3: list[tuple[str, str, set[str], bool]] = [
    ("俺是河南的 俺爹得了食道癌 做手术要八九万 俺家里实在拿不出来", R, {"illness"}, True),
    ("我妈前天突然说不出话 半边身子不能动 县医院说是脑梗 要住院", R, {"illness"}, True),
    ("老伴风湿病多年 关节变形了 干不了地里的活", R, {"illness", "labor_shortage"}, False),
    ("我家娃生下来就是唇腭裂 要做好几次手术", R, {"illness"}, True),
    ("弟弟小时候发高烧烧坏了脑子 一直是我们养着", R, {"disability"}, False),
    ("我右眼去年失明了 左眼也看不清 出不了门", R, {"disability"}, False),
    ("孙子考上了研究生 可家里连路费都没有", R, {"education"}, False),
    ("三个娃都在读书 老大大学老二高中老三初中 学费生活费压得喘不过气", R, {"education"}, False),
    ("女儿读职高一年学费八千 还要住宿费", R, {"education"}, False),
    ("闺女高二辍学去饭店打工了 我想让她回去念书", R, {"education"}, True),
    ("前几天刮大风下雹子 塑料大棚全毁了 里头的菜也完了", R, {"disaster", "industry_failure"}, False),
    ("河水涨上来 把我家院子和灶房都冲垮了 现在借住在哥家", R, {"disaster", "housing"}, True),
    ("今年大旱 地里啥也没收 牛也卖了", R, {"disaster"}, False),
    ("房后的山体有裂缝 一下雨就往下掉石头 随时可能滑下来", R, {"disaster", "housing"}, True),
    ("老汉赶集回来被摩托车撞倒了 腿骨折了 躺在县医院", R, {"accident", "illness"}, True),
    ("娃在学校玩单杠摔下来 胳膊骨折 花了一万多", R, {"accident", "illness"}, True),
    ("我老公在外地工地上从三楼掉下来 现在还没醒", R, {"accident"}, True),
    ("灶房着火把粮食和被子全烧了", R, {"accident"}, True),
    ("养的五十头猪得了蓝耳病 死了一多半", R, {"industry_failure"}, False),
    ("种了十亩辣椒 收购商压价 一斤才五毛 还不够本钱", R, {"industry_failure"}, False),
    ("搞的民宿生意不好 一年没几个客人 贷款利息都还不上", R, {"industry_failure"}, False),
    ("我在深圳电子厂的活没了 回来半年也没找到事干", R, {"unemployment"}, False),
    ("包工头拖了我们半年工资 说没钱 过年都回不了家", R, {"unemployment"}, False),
    ("公司裁员 我四十多了 出去也没人要", R, {"unemployment"}, False),
    ("儿子儿媳都在外头 家里就我和老伴两个七十多的 地也种不动了", R, {"labor_shortage"}, False),
    ("我一个人带着两个娃 还要伺候瘫痪的公公 出不去打工", R, {"labor_shortage", "disability"}, False),
    ("屋后的水井里有死老鼠 不敢喝 要到邻村去拉水", R, {"water"}, False),
    ("水管子年久失修 三天两头漏 一到夏天就没水用", R, {"water"}, False),
    ("男人赌博把家里钱全输了 还欠了一屁股债跑了", R, {"other"}, False),
    ("老爹昨晚过世了 家里连买棺材的钱都没有", R, {"other"}, True),
    ("家里米缸见底了 这几天只能吃点土豆 娃饿得哇哇哭", R, {"other"}, True),
    ("医疗救助一年最多能报多少", Q, set(), False),
    ("残疾人护理补贴怎么申请", Q, set(), False),
    ("大学新生入学资助有哪些", Q, set(), False),
    ("遭了冰雹灾 保险怎么理赔", Q, set(), False),
    ("农村危房改造一户补多少钱", Q, set(), False),
    ("公益性岗位一个月多少工资", Q, set(), False),
    ("防止返贫监测对象怎么确定", Q, set(), False),
    ("要是养殖户的猪死了 政府有没有补助", Q, set(), False),
    ("脱贫户的孩子上中职有没有补贴", Q, set(), False),
    ("我们村的自来水归谁管", Q, set(), False),
    ("上次给我们家报的那个事情办得咋样了", P, set(), False),
    ("我报的困难申请到哪一步了 啥时候能批", P, set(), False),
    ("帮我看看我的申报进度", P, set(), False),
    ("您好", G, set(), False),
    ("谢谢你们 辛苦了", G, set(), False),
    ("好 知道了", G, set(), False),
    ("嗯嗯", G, set(), False),
    ("？", OTHER, set(), False),
    ("我爸住院半个月了 押金又催了 能不能先申请临时救助", R, {"illness"}, True),
    ("房子被大水冲了 现在住哪里啊 村里能不能安排", R, {"disaster", "housing"}, True),
    ("娃上高中没钱交学费 有没有什么政策", R, {"education"}, False),
    ("老汉出车祸走了 肇事司机跑了 我们娘仨咋过", R, {"accident", "labor_shortage"}, True),
    ("不是我家的事 是问问邻居家房子塌了能不能报", R, {"housing"}, True),
    ("家里没有人生病 房子也挺好 就是想问问养羊有没有补贴", Q, set(), False),
    ("我没有被辞退 只是想了解一下失业补助", Q, set(), False),
    ("姓名张建国 身份证500233197512034414 电话13912345678 我家房子裂了大缝", R, {"housing"}, False),
]


@pytest.mark.parametrize(
    ("text", "intent", "risks", "urgent"), TABLE, ids=[f"row{i:03d}" for i in range(len(TABLE))]
)
def test_table(text: str, intent: str, risks: set[str], urgent: bool) -> None:
    u = classify(text)
    got = (u.intent.value, {r.value for r in u.risk_types}, u.urgent)
    assert got == (intent, risks, urgent), f"{text!r}: {got} reasons={u.reasons}"


def _figures(table: list[tuple[str, str, set[str], bool]]) -> tuple[float, float, float]:
    correct = tp_u = fn_u = tp = fp = fn = 0
    for text, intent, risks, urgent in table:
        u = classify(text)
        predicted = {r.value for r in u.risk_types} if u.is_report else set()
        correct += u.is_report == (intent == R)
        tp_u += u.urgent and urgent
        fn_u += urgent and not u.urgent
        tp, fp, fn = tp + len(predicted & risks), fp + len(predicted - risks), fn + len(risks - predicted)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return correct / len(table), tp_u / (tp_u + fn_u), f1


@pytest.mark.parametrize("table", [FRESH, FRESH2, FRESH3], ids=["fresh", "fresh2", "fresh3"])
def test_fresh_tables_meet_the_bars(table: list[tuple[str, str, set[str], bool]]) -> None:
    accuracy, urgent_recall, f1 = _figures(table)
    assert accuracy >= 0.95 and urgent_recall >= 0.95 and f1 >= 0.85, (accuracy, urgent_recall, f1)


def test_table_is_broad() -> None:
    assert len(TABLE) >= 80
    covered = set().union(*(risks for _, _, risks, _ in TABLE))
    assert covered == {r.value for r in RiskType}
    assert {intent for _, intent, _, _ in TABLE} == {i.value for i in Intent}


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("我爸没有住院 就是在家吃药", "住院"),
        ("房子没塌 就是漏雨", "塌"),
        ("房子不是塌了 是裂了缝", "塌"),
        ("家里没人生病 就是没活干", "生病"),
        ("孩子没有辍学 还在上学", "辍学"),
        ("房子没被冲 就是院子进了水", "冲"),
    ],
)
def test_negated_terms_are_named_and_not_counted(text: str, term: str) -> None:
    u = classify(text)
    assert any(r.startswith("否定") and term in r for r in u.reasons), u.reasons
    assert not u.urgent


@pytest.mark.parametrize(
    ("text", "also"),
    [
        ("我爸住院了 押金交不起 能报销多少", True),
        ("房子塌了 危房改造怎么申请", True),
        ("老汉摔断了腿 工伤保险能赔吗", True),
        ("我爸脑梗住院了 押金交不起", False),
        ("房子塌了 咋办", False),  # a plea, not a policy question
    ],
)
def test_mixed_report_and_question(text: str, also: bool) -> None:
    u = classify(text)
    assert u.intent is Intent.REPORT
    assert u.also_question is also
    assert (u.question_text is not None) is also


def test_question_text_keeps_the_topic_and_masks_pii() -> None:
    u = classify("我爸住院了 身份证61272419800101123X 能报销多少")
    assert u.also_question
    assert "住院" in u.question_text and "能报销多少" in u.question_text
    assert "61272419800101123X" not in u.question_text
    q = classify("电话13812345678 低保怎么申请")
    assert q.intent is Intent.QUESTION and "13812345678" not in q.question_text


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("我爸脑梗住院了 押金交不起", "因病：脑梗"),
        ("我爸脑梗住院了 押金交不起", "紧急（就医）"),
        ("我爸脑梗住院了 押金交不起", "困难表述：交不起"),
        ("怎么申报住院报销", "提问：怎么"),
        ("我的申报到哪一步了", "进度查询"),
        ("老汉前年从房上摔下来 腰摔断了 现在瘫在炕上", "已过去"),
        ("要是房子塌了咋办", "假设或泛指：要是"),
    ],
)
def test_reasons_name_the_deciding_words(text: str, needle: str) -> None:
    assert any(needle in r for r in classify(text).reasons), classify(text).reasons


def test_question_about_a_topic_lists_it_as_topic_only() -> None:
    u = classify("怎么申报住院报销")
    assert u.intent is Intent.QUESTION and u.risk_types == () and not u.urgent
    assert RiskType.ILLNESS in u.topics


def test_digits_of_an_id_number_are_not_read_as_words() -> None:
    # 500233197512034414 contains 120 (the ambulance number); the ID must not make a case urgent.
    u = classify("身份证500233197512034414 电话13912345678 我家房子裂了大缝")
    assert u.intent is Intent.REPORT and not u.urgent
    assert all("500233197512034414" not in r and "13912345678" not in r for r in u.reasons)


def test_full_width_input_is_read_like_ascii() -> None:
    u = classify("我爸住院了，押金交不起！能报销多少？")
    assert u.intent is Intent.REPORT and u.urgent and u.also_question


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_message_is_other(text: str) -> None:
    assert classify(text).intent is Intent.OTHER


def test_intent_is_a_str_enum() -> None:
    assert Intent("report") is Intent.REPORT and Intent.REPORT == "report"
    assert isinstance(classify("你好"), Understanding)


def test_vocabulary_rejects_bad_rows() -> None:
    with pytest.raises(ValueError, match="unknown group"):
        Vocabulary.parse("rsk\tillness\t病\n")
    with pytest.raises(ValueError, match="capturing"):
        Vocabulary.parse("risk\tillness\tre:(病|痛)\n")
    with pytest.raises(ValueError, match="unknown flag"):
        Vocabulary.parse("risk\tillness\t病\ttopc\n")


def test_vocabulary_covers_every_risk_type() -> None:
    from handlers.understanding import load_vocabulary

    assert set(load_vocabulary().keys("risk")) == {r.value for r in RiskType}


def test_classify_is_fast() -> None:
    texts = [t for t, *_ in TABLE]
    classify(texts[0])  # warm: compile the table
    start = time.perf_counter()
    for _ in range(5):
        for t in texts:
            classify(t)
    per_message = (time.perf_counter() - start) / (5 * len(texts))
    assert per_message < 0.005, per_message  # a generous ceiling; the figure is ~0.1 ms


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "handlers.understanding", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_classify_jsonl_contract() -> None:
    lines = [
        {"id": "a", "text": "房子昨晚塌了一间 娃没地方住"},
        {"id": 7, "text": "小额贷款能贷多少"},
        {"id": "c", "text": "我的申报到哪一步了"},
    ]
    proc = _run(
        "classify", "--jsonl", stdin="\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n"
    )
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["id"] for o in out] == ["a", 7, "c"]
    assert set(out[0]) >= {"id", "intent", "risk_types", "urgent"}
    assert out[0]["intent"] == "report" and out[0]["risk_types"] == ["housing"] and out[0]["urgent"] is True
    assert out[1]["intent"] == "question" and out[1]["risk_types"] == [] and out[1]["urgent"] is False
    assert out[2]["intent"] == "progress"


def test_classify_jsonl_reports_a_bad_line_and_goes_on() -> None:
    proc = _run("classify", "--jsonl", stdin='not json\n{"id": 1, "text": "你好"}\n')
    assert proc.returncode == 1
    assert "line 1" in proc.stderr
    assert json.loads(proc.stdout.strip())["intent"] == "greeting"


def test_eval_command_prints_its_figures(tmp_path: Path) -> None:
    sample = tmp_path / "sample.jsonl"
    rows = [
        {
            "id": "1",
            "text": "我爸脑梗住院了 押金交不起",
            "risk_types": ["illness"],
            "urgent": True,
            "is_report": True,
        },
        {"id": "2", "text": "小额贷款能贷多少", "risk_types": [], "urgent": False, "is_report": False},
        {"id": "3", "text": "今年苹果卖不出去", "risk_types": ["water"], "urgent": False, "is_report": True},
    ]
    sample.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    proc = _run("eval", str(sample))
    assert proc.returncode == 0, proc.stderr
    for label in ("intent accuracy", "urgent recall", "urgent precision", "risk-type micro-F1"):
        assert label in proc.stdout
    assert "intent accuracy (report vs not): 1.000" in proc.stdout
    assert "3" in proc.stdout.split("misclassified")[1]  # line 3 is listed


@pytest.mark.skipif(not DEV.exists(), reason="the shared evaluation sample is not checked out here")
def test_eval_command_runs_on_the_dev_sample() -> None:
    proc = _run("eval", str(DEV))
    assert proc.returncode == 0, proc.stderr
    for label in ("intent accuracy", "urgent recall", "urgent precision", "risk-type micro-F1"):
        assert label in proc.stdout
