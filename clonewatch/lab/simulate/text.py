"""Compact generator of realistic English inputs for the simulated APIs.

Three families of text live here:

* chat / completion prompts from ~36 topic domains, each with its own vocabulary and
  templates, plus generic templates, follow-ups, paraphrases and RAG-style prompts;
* inputs of two text classifiers: product reviews (``sentiment-v2``) and support
  tickets (``ticket-intent-v3``);
* small edits of a text (word swaps, synonyms, typos, inserted or deleted words),
  used both by boundary-probing attacks and by honest users fixing their input.

Every generated prompt carries the id of the topic it was drawn from, so tests and
benchmarks can measure topical breadth without parsing strings.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# --------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class Topic:
    """A subject domain: things people ask about, contexts, and question shapes."""

    id: str
    nouns: tuple[str, ...]
    contexts: tuple[str, ...]
    templates: tuple[str, ...]


def _split(joined: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in joined.split("|"))


def _topic(topic_id: str, nouns: str, contexts: str, templates: str) -> Topic:
    return Topic(topic_id, _split(nouns), _split(contexts), _split(templates))


# Slots: {a} and {b} are two different nouns of the topic, {c} a context, {n} a number.
# The order is a rough popularity ranking: benign users pick early topics more often.
TOPICS: tuple[Topic, ...] = (
    _topic(
        "python_debugging",
        "a KeyError in a dict lookup|an async function that never returns|a circular import"
        "|a pandas SettingWithCopyWarning|a recursion limit error|a memory leak in a long-running"
        " worker|list comprehensions|a mutable default argument|virtual environments"
        "|type hints with generics|a flaky pytest fixture|unicode decoding errors",
        "in Python 3.11|inside a Docker container|in a Django view|in a Jupyter notebook"
        "|under heavy load|in a FastAPI endpoint",
        "I keep getting {a} {c}. How do I debug it?|Why does my code hit {a} only sometimes?"
        "|What's the idiomatic way to avoid {a}?|How do I write a test that reproduces {a} {c}?"
        "|My colleague says {b} causes {a}. Is that right?"
        "|Here is my traceback, it ends with {a}. What should I check first?",
    ),
    _topic(
        "cooking",
        "risotto|a roux|braised short ribs|a pan sauce|a vegetable stir-fry|homemade chicken"
        " stock|caramelized onions|a cast iron skillet|sous vide chicken breast|fresh egg pasta"
        "|a Thai green curry|pickled red onions|a steak sear|a vinaigrette",
        "for a family of four|on a weeknight|without dairy|in under 30 minutes|for a dinner"
        " party|on a tight budget|with leftover rice",
        "How do I make {a} {c}?|My {a} always turns out bland. What am I doing wrong?"
        "|Can I prepare {a} ahead of time {c}?|What should I serve with {a}?"
        "|How long does {a} keep in the fridge?|Give me a simple plan to cook {a} and {b} {c}.",
    ),
    _topic(
        "travel",
        "a week in Lisbon|the JR rail pass|travel insurance|a layover in Istanbul|a road trip"
        " through Iceland|hostels in Berlin|a Schengen visa|packing carry-on only|jet lag"
        "|the Amalfi coast|a budget trip to Vietnam|train travel in Switzerland",
        "in late autumn|with two kids|on a student budget|for a honeymoon|as a solo traveler"
        "|during the rainy season",
        "Plan {a} {c}.|Is {a} worth it {c}?|What should I know about {a} before I go?"
        "|How many days do I need for {a}?|Which is better {c}: {a} or {b}?"
        "|What are the hidden costs of {a}?",
    ),
    _topic(
        "customer_support",
        "a late delivery complaint|a refund request|an angry one-star review|a billing dispute"
        "|a subscription cancellation|a damaged package|a password reset request|a warranty"
        " claim|an escalation to a manager|a missing invoice|a product recall notice",
        "in a friendly tone|for an enterprise customer|in under 100 words|in Spanish"
        "|without admitting fault|for a first-time buyer",
        "Write a reply to {a} {c}.|How should an agent handle {a}?"
        "|Draft a macro for {a} {c}.|What is a good first response to {a}?"
        "|Rewrite this reply to {a} so it sounds more empathetic."
        "|Summarize this customer thread about {a} for the next shift.",
    ),
    _topic(
        "personal_finance",
        "an emergency fund|a Roth IRA|credit card debt|a monthly budget|a high-yield savings"
        " account|a 401(k) match|student loan refinancing|a credit score|paying off a car loan"
        "|a sinking fund|the 50/30/20 rule",
        "on a 60k salary|as a freelancer|with a new baby|in my twenties|before buying a house"
        "|while paying rent in a big city",
        "How much should I put into {a} {c}?|Should I prioritize {a} or {b} {c}?"
        "|Explain {a} like I'm new to money.|What's a realistic plan for {a} {c}?"
        "|Is {a} a good idea {c}?",
    ),
    _topic(
        "tax_law",
        "the home office deduction|capital gains tax|estimated quarterly taxes|the standard"
        " deduction|a 1099 contractor|depreciation of rental property|VAT registration"
        "|a tax audit|charitable contributions|the foreign earned income exclusion"
        "|wash sale rules|an amended return",
        "for a sole proprietor|in California|for a remote worker abroad|for a small LLC"
        "|after selling stock|for married couples filing jointly",
        "How does {a} work {c}?|Am I eligible for {a} {c}?|What records do I need for {a}?"
        "|What happens if I get {a} wrong?|Explain the interaction between {a} and {b}."
        "|What are the deadlines for {a} {c}?",
    ),
    _topic(
        "medicine",
        "a persistent dry cough|high blood pressure|ibuprofen and acetaminophen|a migraine"
        " with aura|type 2 diabetes|a sprained ankle|iron deficiency|seasonal allergies"
        "|a vitamin D supplement|lower back pain|insomnia|a tetanus booster",
        "for someone over 60|during pregnancy|for a child|after surgery|with a history of"
        " asthma|while traveling",
        "What are the usual treatments for {a} {c}?|When should I see a doctor about {a}?"
        "|Is it safe to combine {a} and {b}?|What are early warning signs of {a}?"
        "|How is {a} normally diagnosed?|Can {a} be managed without medication {c}?",
    ),
    _topic(
        "javascript",
        "a React useEffect loop|promises versus async/await|a CORS error|TypeScript generics"
        "|a memory leak in Node|bundle size with webpack|event delegation|a Next.js hydration"
        " error|closures in loops|optional chaining|an npm peer dependency conflict",
        "in a React app|on Node 20|in a monorepo|in the browser|with Vite|in strict mode",
        "Why do I get {a} {c}?|How do I fix {a}?|What's the cleanest way to handle {a} {c}?"
        "|Explain {a} with a small code example.|When should I prefer {a} over {b}?",
    ),
    _topic(
        "fitness",
        "a beginner strength program|progressive overload|a 5k training plan|deadlift form"
        "|rest days|high-intensity interval training|a push-pull-legs split|mobility work"
        "|a plateau in bench press|zone 2 cardio|protein timing",
        "at home with dumbbells|three days a week|after a knee injury|at 45 years old"
        "|with only 30 minutes|while losing weight",
        "Design {a} {c}.|How do I get better at {a} {c}?|Is {a} enough {c}?"
        "|What are common mistakes with {a}?|Should I combine {a} with {b}?",
    ),
    _topic(
        "marketing",
        "a product launch email|SEO for a blog|a landing page headline|a referral program"
        "|an Instagram content calendar|customer personas|A/B testing subject lines"
        "|a press release|churn reduction|a brand voice guide|Google Ads keywords",
        "for a B2B SaaS startup|for a local bakery|with no budget|for Gen Z|in a crowded"
        " market|for a nonprofit",
        "Write {a} {c}.|Give me {n} ideas for {a} {c}.|How do I measure the success of {a}?"
        "|What makes {a} effective?|Critique my plan for {a} {c}.",
    ),
    _topic(
        "job_search",
        "a software engineer resume|a cover letter|a salary negotiation|a behavioral interview"
        "|a LinkedIn summary|a career change into data science|a counteroffer|a portfolio"
        " website|a gap in my employment history|a thank-you email after an interview",
        "for a senior role|as a new graduate|after a layoff|for a remote position|in"
        " healthcare|with ten years of experience",
        "Help me improve {a} {c}.|How do I talk about {a} in an interview?"
        "|What do recruiters look for in {a} {c}?|Draft {a} {c}."
        "|How should I handle {a} and {b} at the same time?",
    ),
    _topic(
        "sql_databases",
        "a slow JOIN|a composite index|window functions|a deadlock in Postgres|database"
        " normalization|a recursive CTE|query plan analysis|an N+1 query problem|connection"
        " pooling|a schema migration|isolation levels",
        "in PostgreSQL 16|on MySQL 8|with 50 million rows|in a reporting dashboard"
        "|behind an ORM|on a read replica",
        "How can I speed up {a} {c}?|Explain {a} with an example query."
        "|When should I use {a} instead of {b}?|Why would {a} happen {c}?"
        "|Write a query that demonstrates {a}.",
    ),
    _topic(
        "fiction_writing",
        "an unreliable narrator|a villain's backstory|a plot twist|dialogue tags|a"
        " slow-burn romance|world-building for a fantasy city|a cliffhanger ending|a"
        " flashback scene|pacing in the second act|a first chapter hook",
        "for a young adult novel|in a mystery|set in 1920s Paris|in under 500 words|for a"
        " short story contest|in the first person",
        "Write {a} {c}.|How do I make {a} feel believable?|Give me {n} ideas for {a} {c}."
        "|What's wrong with my draft of {a}?|How can {a} and {b} work together {c}?",
    ),
    _topic(
        "poetry",
        "a sonnet about the sea|a haiku sequence|a villanelle|free verse about grief|a poem"
        " for a wedding toast|an ode to coffee|a limerick about a cat|enjambment|a prose"
        " poem|iambic pentameter",
        "in a melancholy tone|for a ten-year-old|with an unexpected ending|in the style of"
        " the Romantic poets|without rhyming|about autumn",
        "Write {a} {c}.|Can you explain how {a} works?|Improve the rhythm of {a}."
        "|Turn {a} into {b}.|What makes {a} memorable?",
    ),
    _topic(
        "history",
        "the fall of the Western Roman Empire|the Meiji Restoration|the Treaty of Versailles"
        "|the Silk Road|the printing press|the Cuban Missile Crisis|the Hanseatic League"
        "|the French Revolution|the Byzantine economy|decolonization in Africa",
        "in a few paragraphs|for a high school essay|from an economic perspective|compared"
        " with today|for a podcast script|with key dates",
        "What caused {a}?|Summarize {a} {c}.|How did {a} influence {b}?"
        "|What are the main debates among historians about {a}?|Who were the key figures in {a}?",
    ),
    _topic(
        "physics",
        "quantum entanglement|special relativity|the photoelectric effect|entropy|angular"
        " momentum|dark matter|superconductivity|the double-slit experiment|Maxwell's"
        " equations|Newton's third law|black body radiation",
        "without math|for an undergraduate exam|with an everyday analogy|in one paragraph"
        "|with the key equations|for a science fair",
        "Explain {a} {c}.|Why does {a} happen?|How is {a} related to {b}?"
        "|What experiment demonstrates {a}?|Solve a simple problem involving {a}.",
    ),
    _topic(
        "chemistry",
        "oxidation states|buffer solutions|Le Chatelier's principle|covalent bonds|reaction"
        " kinetics|chirality|titration curves|electronegativity|the ideal gas law"
        "|polymerization|hydrogen bonding",
        "for an AP chemistry test|with a lab example|in simple terms|with worked numbers"
        "|for organic chemistry|step by step",
        "Explain {a} {c}.|How do I calculate {a}?|What's the link between {a} and {b}?"
        "|Give me a practice problem on {a}.|Why does {a} matter in industry?",
    ),
    _topic(
        "biology",
        "CRISPR gene editing|mitochondria|natural selection|the immune response|photosynthesis"
        "|protein folding|the gut microbiome|cell signaling|epigenetics|meiosis|ecosystems",
        "for a biology class|in plain language|with recent research|for a curious teenager"
        "|with diagrams described in words|in two paragraphs",
        "How does {a} work?|Explain {a} {c}.|What is the role of {a} in {b}?"
        "|What are open questions about {a}?|Summarize what we know about {a} {c}.",
    ),
    _topic(
        "mathematics",
        "eigenvalues|the chain rule|Bayes' theorem|proof by induction|Fourier series|prime"
        " factorization|linear regression|the central limit theorem|complex numbers"
        "|integration by parts|graph coloring",
        "with a worked example|for a first-year student|intuitively|with a proof sketch"
        "|for a coding interview|in three steps",
        "Explain {a} {c}.|Solve this problem using {a}.|Why does {a} work?"
        "|How is {a} used together with {b}?|Give me {n} practice problems on {a}.",
    ),
    _topic(
        "gardening",
        "tomato blight|composting|raised garden beds|pruning roses|succulents|a lawn with"
        " brown patches|companion planting|growing herbs indoors|aphids|seed starting"
        "|mulching",
        "in clay soil|on a small balcony|in a hot climate|in zone 6|for beginners|without"
        " pesticides",
        "How do I deal with {a} {c}?|When is the best time for {a}?"
        "|What am I doing wrong with {a}?|Can {a} help with {b}?|Give me a plan for {a} {c}.",
    ),
    _topic(
        "parenting",
        "toddler tantrums|sleep training|screen time limits|picky eating|potty training"
        "|sibling rivalry|homework battles|a teenager's first phone|allowance|separation"
        " anxiety",
        "for a three-year-old|with twins|as a single parent|for a shy child|during a move"
        "|with a new baby at home",
        "How should I handle {a} {c}?|Is {a} normal {c}?|What do experts say about {a}?"
        "|Any tips for {a}?|How do {a} and {b} affect each other?",
    ),
    _topic(
        "pets",
        "a dog that pulls on the leash|litter box problems|puppy vaccinations|a cat"
        " scratching furniture|grain-free dog food|separation anxiety in dogs|introducing"
        " a second cat|aquarium nitrogen cycle|a rabbit's diet|crate training",
        "in a small apartment|for a senior dog|for a rescue animal|with young children"
        "|on a budget|for a first-time owner",
        "How do I fix {a} {c}?|Is {a} a good idea {c}?|What causes {a}?"
        "|How long does {a} usually take?|Should I worry about {a}?",
    ),
    _topic(
        "home_repair",
        "a leaky faucet|drywall patching|a running toilet|squeaky floorboards|a tripped"
        " breaker|grout cleaning|a sticking door|caulking a bathtub|a clogged drain"
        "|installing a ceiling fan|a cracked tile",
        "without calling a plumber|in an old house|with basic tools|in a rental apartment"
        "|on a Saturday afternoon|safely",
        "How do I fix {a} {c}?|What tools do I need for {a}?|Why does {a} keep happening?"
        "|Is {a} a DIY job or should I hire someone?|Walk me through {a} step by step.",
    ),
    _topic(
        "cars",
        "an EV versus a hybrid|a check engine light|brake pads|tire rotation|a used car"
        " inspection|car loan interest|winter tires|an oil change interval|a dead battery"
        "|leasing versus buying",
        "for a long commute|in a snowy climate|for a new driver|under 20k dollars|for a"
        " family of five|with high mileage",
        "Should I get {a} {c}?|What does {a} usually mean?|How much does {a} cost {c}?"
        "|Compare {a} and {b}.|What should I check about {a} {c}?",
    ),
    _topic(
        "legal_contracts",
        "a non-compete clause|an NDA|a lease termination|an indemnification clause|a"
        " freelance contract|intellectual property assignment|a security deposit dispute"
        "|a force majeure clause|an at-will employment agreement|a small claims case",
        "in New York|for a contractor|for a startup founder|in the UK|before signing"
        "|as a tenant",
        "What does {a} mean {c}?|Is {a} enforceable {c}?|What should I negotiate in {a}?"
        "|What are the risks of {a}?|How does {a} interact with {b}?",
    ),
    _topic(
        "real_estate",
        "a mortgage pre-approval|closing costs|a home inspection|an adjustable-rate mortgage"
        "|property taxes|a bidding war|rental yield|a condo HOA|refinancing|a first-time"
        " buyer program",
        "in a rising rate market|for a first home|as an investor|in Texas|with a small"
        " down payment|for a duplex",
        "How does {a} work {c}?|What should I watch out for with {a}?|Is {a} worth it {c}?"
        "|Explain {a} versus {b}.|What questions should I ask about {a}?",
    ),
    _topic(
        "machine_learning",
        "overfitting|gradient descent|a transformer attention layer|cross-validation|class"
        " imbalance|feature scaling|a learning rate schedule|embeddings|dropout|precision"
        " and recall|gradient boosting",
        "with scikit-learn|in PyTorch|for tabular data|on a small dataset|for a production"
        " model|intuitively",
        "Explain {a} {c}.|How do I diagnose {a}?|When does {a} beat {b}?"
        "|What's a good default for {a} {c}?|Show me code for {a} {c}.",
    ),
    _topic(
        "devops",
        "a Kubernetes CrashLoopBackOff|a Dockerfile layer cache|Terraform state locking|a"
        " GitHub Actions matrix build|blue-green deployments|an nginx reverse proxy|log"
        " rotation|a Prometheus alert rule|TLS certificate renewal|Helm chart values",
        "on AWS|in a small team|for a staging environment|with zero downtime|on bare metal"
        "|in a CI pipeline",
        "How do I set up {a} {c}?|Why am I seeing {a}?|What's the best practice for {a} {c}?"
        "|Compare {a} with {b}.|Debug {a} for me.",
    ),
    _topic(
        "music_theory",
        "the circle of fifths|modal interchange|a ii-V-I progression|syncopation|voice"
        " leading|the Dorian mode|counterpoint|diminished chords|polyrhythms|ear training",
        "on guitar|for jazz piano|for songwriting|as a beginner|in pop music|with examples",
        "Explain {a} {c}.|How can I practice {a}?|How does {a} relate to {b}?"
        "|Give me an exercise for {a} {c}.|Why does {a} sound the way it does?",
    ),
    _topic(
        "language_learning",
        "Spanish subjunctive|Japanese kanji|German cases|French pronunciation|spaced"
        " repetition|Mandarin tones|Italian verb conjugation|language exchange partners"
        "|Korean honorifics|reading graded readers",
        "in six months|as an adult learner|for a trip|with 20 minutes a day|for a business"
        " meeting|without a teacher",
        "How do I learn {a} {c}?|Explain {a} with examples.|What is the fastest way to"
        " master {a}?|Can you quiz me on {a}?|How does {a} compare to {b}?",
    ),
    _topic(
        "philosophy",
        "the trolley problem|Stoicism|free will|utilitarianism|Kant's categorical imperative"
        "|existentialism|the ship of Theseus|moral relativism|Plato's cave|personal identity",
        "in modern life|for an essay|in simple words|from both sides|with a real example"
        "|in three paragraphs",
        "Explain {a} {c}.|What are the strongest objections to {a}?"
        "|How would {a} answer {b}?|Is {a} still relevant {c}?|Summarize {a} {c}.",
    ),
    _topic(
        "astronomy",
        "a solar eclipse|exoplanets|the Andromeda galaxy|neutron stars|the James Webb"
        " telescope|Saturn's rings|a meteor shower|light pollution|the Big Bang|red giants",
        "for stargazing tonight|with a small telescope|for kids|in simple terms|with recent"
        " discoveries|from the southern hemisphere",
        "What is {a}?|How can I observe {a} {c}?|Explain {a} {c}.|How do {a} and {b} differ?"
        "|What have we learned recently about {a}?",
    ),
    _topic(
        "mental_health",
        "burnout|social anxiety|a gratitude journal|procrastination|grief after a loss"
        "|mindfulness meditation|work-life balance|impostor syndrome|panic attacks|setting"
        " boundaries",
        "at work|as a student|during the holidays|after a breakup|as a new manager|when"
        " working from home",
        "How can I cope with {a} {c}?|What are practical steps for {a}?"
        "|Is {a} connected to {b}?|How do I explain {a} to my family?"
        "|What does research say about {a}?",
    ),
    _topic(
        "photography",
        "exposure triangle|portrait lighting|long exposure at night|a 50mm prime lens"
        "|Lightroom color grading|composition rules|street photography|shooting in RAW"
        "|focus stacking|golden hour",
        "with a smartphone|on a budget|for a wedding|indoors|for beginners|with a mirrorless"
        " camera",
        "How do I get better at {a} {c}?|Explain {a} {c}.|What settings should I use for {a}?"
        "|Is {a} better than {b}?|Critique my approach to {a}.",
    ),
    _topic(
        "gaming",
        "a speedrun route|a Dark Souls boss|deck building in a card game|an RTS build order"
        "|a Minecraft redstone clock|a competitive FPS aim routine|game balance|a tabletop"
        " campaign|a pixel art style|level design",
        "for a beginner|on console|for ranked play|for a game jam|with friends|solo",
        "How do I improve at {a} {c}?|Give me tips for {a}.|What makes {a} fun?"
        "|Compare {a} and {b}.|Design {a} {c}.",
    ),
    _topic(
        "investing",
        "index funds|dividend stocks|bond ladders|dollar-cost averaging|REITs|options"
        " covered calls|an emerging markets ETF|portfolio rebalancing|expense ratios"
        "|value versus growth stocks",
        "for retirement in 30 years|with 10k dollars|in a taxable account|during a"
        " recession|for a conservative investor|as a beginner",
        "Should I invest in {a} {c}?|How does {a} work?|What are the risks of {a} {c}?"
        "|Compare {a} with {b}.|How often should I review {a}?",
    ),
    _topic(
        "nutrition",
        "intermittent fasting|a high-protein breakfast|fiber intake|the Mediterranean diet"
        "|meal prepping|added sugar|omega-3 fatty acids|plant-based protein|hydration"
        "|a low-FODMAP diet",
        "for weight loss|for an endurance athlete|on a vegetarian diet|for someone with"
        " diabetes|on a busy schedule|for teenagers",
        "Is {a} healthy {c}?|How do I start {a} {c}?|What's the evidence for {a}?"
        "|Build me a meal plan around {a}.|How does {a} compare with {b}?",
    ),
)

TOPIC_IDS: tuple[str, ...] = tuple(topic.id for topic in TOPICS)
_BY_ID = {topic.id: topic for topic in TOPICS}

GENERIC_TEMPLATES: tuple[str, ...] = (
    "What is {a}?",
    "Can you explain {a} in simple terms?",
    "What's the difference between {a} and {b}?",
    "Give me {n} tips about {a} {c}.",
    "How does {a} relate to {b}?",
    "Write a short overview of {a} {c}.",
    "What are the most common mistakes with {a}?",
    "Explain {a} to a complete beginner.",
    "List the pros and cons of {a}.",
    "Summarize the key facts about {a} and {b}.",
    "I have a question about {a} {c}. Where should I start?",
    "Compare {a} and {b} {c}.",
)

FOLLOW_UPS: tuple[str, ...] = (
    "And what about {b}?",
    "Can you give me an example?",
    "Could you make that shorter?",
    "Why is that?",
    "How would that change {c}?",
    "Thanks! What if I used {b} instead?",
    "Can you explain the part about {a} again, more simply?",
    "ok and how does {b} fit in",
    "Is that also true {c}?",
    "Can you put that in a table?",
    "What would you recommend for {b}?",
    "Sorry, I meant {b}, not {a}.",
    "Great, can you go into more detail on the second point?",
    "hmm that doesn't seem right, are you sure?",
)

_FACTS: tuple[str, ...] = (
    "{a} is commonly discussed together with {b}.",
    "Most guides recommend reviewing {a} {c}.",
    "Problems with {a} are often caused by {b}.",
    "{a} usually matters more than {b} {c}.",
    "Section {n} of the handbook covers {a} in detail.",
    "Customers frequently ask whether {a} affects {b}.",
    "The internal policy on {a} was last updated in March.",
    "When {a} is involved, staff should first check {b}.",
)


@dataclass(frozen=True)
class Prompt:
    """A generated prompt and where it came from (the topic id is never logged)."""

    text: str
    topic: str
    focus: str  # the main noun, so follow-ups can refer back to it


def popular_topics(rng: random.Random, k: int) -> list[str]:
    """Draw ``k`` distinct topic ids, favouring popular topics (Zipf-like), as people do."""
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(TOPICS))]
    chosen: list[str] = []
    while len(chosen) < min(k, len(TOPICS)):
        pick = rng.choices(TOPIC_IDS, weights)[0]
        if pick not in chosen:
            chosen.append(pick)
    return chosen


def _slots(rng: random.Random, t: Topic, focus: str | None = None) -> dict[str, str]:
    a = focus or rng.choice(t.nouns)
    b = rng.choice([noun for noun in t.nouns if noun != a])
    return {"a": a, "b": b, "c": rng.choice(t.contexts), "n": str(rng.randint(3, 7))}


def _sentence(template: str, slots: dict[str, str]) -> str:
    text = template.format_map(slots)
    return text[0].upper() + text[1:]


def question(rng: random.Random, topic_id: str, generic_share: float = 0.35) -> Prompt:
    """A first question about a topic, from its own or the generic templates."""
    t = _BY_ID[topic_id]
    pool = GENERIC_TEMPLATES if rng.random() < generic_share else t.templates
    slots = _slots(rng, t)
    return Prompt(_sentence(rng.choice(pool), slots), topic_id, slots["a"])


def follow_up(rng: random.Random, previous: Prompt) -> Prompt:
    """A chat follow-up to ``previous``: a short reference back, or a rephrasing."""
    if rng.random() < 0.15:
        return Prompt(paraphrase(rng, previous.text), previous.topic, previous.focus)
    t = _BY_ID[previous.topic]
    slots = _slots(rng, t, focus=previous.focus)
    if rng.random() < 0.25:  # a fresh but related question in the same conversation
        template = rng.choice(t.templates)
        return Prompt(_sentence(template, slots), previous.topic, slots["a"])
    return Prompt(_sentence(rng.choice(FOLLOW_UPS), slots), previous.topic, previous.focus)


def passage(rng: random.Random, topic_id: str, sentences: int) -> str:
    """A knowledge-base style paragraph about a topic (RAG context, pasted text)."""
    t = _BY_ID[topic_id]
    return " ".join(_sentence(rng.choice(_FACTS), _slots(rng, t)) for _ in range(sentences))


def rag_prompt(rng: random.Random, topic_id: str) -> Prompt:
    """A retrieval-augmented prompt: a few retrieved chunks, then the user's question."""
    q = question(rng, topic_id)
    chunks = "\n\n".join(
        f"[{i + 1}] {passage(rng, topic_id, rng.randint(2, 5))}" for i in range(rng.randint(2, 4))
    )
    text = (
        "Answer the question using only the context below. If the answer is not in the"
        f" context, say you don't know.\n\nContext:\n{chunks}\n\nQuestion: {q.text}\nAnswer:"
    )
    return Prompt(text, topic_id, q.focus)


_BENCHMARK_FORMATS: tuple[str, ...] = (
    "Question: Which of the following is most closely associated with {a}?\n"
    "A. {o0}\nB. {o1}\nC. {o2}\nD. {o3}\nAnswer:",
    "The following is a multiple choice question about {t}.\n\n"
    "Which statement about {a} is correct?\n(A) {o0}\n(B) {o1}\n(C) {o2}\n(D) {o3}\nAnswer: (",
    "Q: Is {a} usually discussed together with {b}? Answer yes or no.\nA:",
)


def benchmark_item(rng: random.Random, topic_id: str, fmt: int) -> Prompt:
    """A benchmark-style question (multiple choice or yes/no) in one of a few formats."""
    t = _BY_ID[topic_id]
    a, *options = rng.sample(t.nouns, 5)
    slots = {"a": a, "b": options[0], "t": topic_id.replace("_", " ")}
    slots.update({f"o{i}": option for i, option in enumerate(options)})
    return Prompt(_BENCHMARK_FORMATS[fmt % len(_BENCHMARK_FORMATS)].format_map(slots), topic_id, a)


_TASKS: tuple[str, ...] = (
    "Extract the main entities from the following text and return them as JSON.\n\nText: {x}",
    "Summarize the following in one sentence:\n{x}",
    "Rewrite this for a professional audience:\n{x}",
    "Translate the following into French:\n{x}",
    "You are a helpful assistant. Answer the user's question.\nUser: {x}",
    "Classify the following text into one of: question, complaint, praise, other.\n{x}",
)
_CONSTRAINTS: tuple[str, ...] = (
    " Return only JSON.",
    " Do not include explanations.",
    " Use at most 20 words.",
    " Think step by step.",
    " If unsure, answer 'unknown'.",
    " Use British spelling.",
)


def dev_task(rng: random.Random, topic_id: str) -> Prompt:
    """A developer's prompt under construction: an instruction wrapped around some input."""
    body = passage(rng, topic_id, rng.randint(1, 3)) if rng.random() < 0.6 else question(
        rng, topic_id
    ).text
    return Prompt(rng.choice(_TASKS).format(x=body), topic_id, body[:30])


def revise_task(rng: random.Random, prompt: Prompt) -> Prompt:
    """The next version of a developer's prompt: a reworded one or an added constraint."""
    constraint = rng.choice(_CONSTRAINTS)
    if rng.random() < 0.5 and constraint not in prompt.text:
        return Prompt(prompt.text + constraint, prompt.topic, prompt.focus)
    return Prompt(paraphrase(rng, prompt.text), prompt.topic, prompt.focus)


# ----------------------------------------------------------------------- paraphrasing

_PREFIXES = ("Please ", "Quick question: ", "Hi! ", "I was wondering: ", "Could you help? ",
             "Hey, ", "Question - ", "I need help. ")
_SUFFIXES = (" Thanks.", " Please be concise.", " Explain step by step.", " Keep it brief.",
             " Answer in detail.", " thx", " Use examples.", " Be precise.")
_REWRITES: tuple[tuple[str, str], ...] = (
    ("Can you explain", "Could you describe"), ("explain", "describe"), ("simple", "plain"),
    ("difference between", "distinction between"), ("tips", "pieces of advice"),
    ("most common", "most frequent"), ("Give me", "Provide"), ("short", "brief"),
    ("How do I", "What's the best way to"), ("What is", "What's"), ("mistakes", "errors"),
    ("beginner", "newcomer"), ("overview", "summary"), ("pros and cons", "advantages and"
    " disadvantages"), ("Write", "Draft"), ("How does", "In what way does"),
    ("Is it", "Would it be"), ("should I", "would you advise me to"), ("usually", "typically"),
    ("worth it", "a good choice"), ("Compare", "Contrast"), ("Summarize", "Give a summary of"),
    ("help", "assist"), ("fix", "resolve"), ("best", "ideal"), ("key", "main"),
)


def paraphrase(rng: random.Random, text: str) -> str:
    """Reword ``text`` slightly: synonyms, politeness prefixes, suffixes, casing."""
    for _ in range(8):
        out = text
        present = [pair for pair in _REWRITES if pair[0] in out]
        for old, new in rng.sample(present, k=min(len(present), rng.randint(1, 2))):
            out = out.replace(old, new, 1)
        roll = rng.random()
        if roll < 0.3:
            out = rng.choice(_PREFIXES) + out[0].lower() + out[1:]
        elif roll < 0.55:
            out = out + rng.choice(_SUFFIXES)
        elif roll < 0.65:
            out = out.lower().rstrip("?.")
        if out != text:
            return out
    return text + rng.choice(_SUFFIXES)


# ----------------------------------------------------------------- classifier inputs

_PRODUCTS: dict[str, tuple[str, ...]] = {
    "electronics": ("wireless earbuds", "phone charger", "bluetooth speaker", "smartwatch",
                    "laptop stand", "webcam", "power bank", "USB-C hub"),
    "kitchen": ("air fryer", "chef's knife", "coffee grinder", "blender", "nonstick pan",
                "electric kettle", "rice cooker"),
    "clothing": ("rain jacket", "running shoes", "wool sweater", "jeans", "winter boots",
                 "backpack"),
    "home": ("desk lamp", "office chair", "memory foam pillow", "blackout curtains",
             "robot vacuum", "bookshelf"),
    "beauty": ("face moisturizer", "hair dryer", "sunscreen", "electric toothbrush",
               "shampoo"),
    "toys": ("building blocks set", "board game", "remote control car", "puzzle", "plush toy"),
    "hotel": ("hotel room", "resort stay", "airport hotel", "boutique hotel"),
    "app": ("budgeting app", "meditation app", "photo editor", "VPN service", "music app"),
}
_ASPECTS = ("battery life", "build quality", "sound", "price", "delivery", "customer service",
            "size", "instructions", "color", "comfort", "setup", "smell", "performance")
_POSITIVE = ("is excellent", "works perfectly", "exceeded my expectations", "is great for the"
             " price", "is really good", "is solid", "is better than I expected", "is fantastic")
_NEGATIVE = ("is terrible", "stopped working after a week", "is really disappointing",
             "feels cheap", "was nothing like the pictures", "is awful", "is way too poor",
             "broke on day two")
_OPENERS = ("I bought this {p} last month.", "Ordered the {p} for my son.", "Got the {p} on"
            " sale.", "This is my second {p} from this brand.", "Used the {p} for two weeks now.",
            "We stayed at this {p} in May.", "Been using this {p} daily.")
_CLOSERS_POS = ("Would buy again.", "Highly recommend!", "Five stars.", "Very happy overall.",
                "Great value.", "")
_CLOSERS_NEG = ("Returning it.", "Would not recommend.", "Save your money.", "One star.",
                "Very annoyed.", "")

_TICKETS: dict[str, tuple[str, ...]] = {
    "refund": ("I want a refund for order {o}, the {p} is not what I ordered.",
               "Please refund my last payment, I was charged for something I returned {d} days"
               " ago.", "how do I get my money back for the {p}"),
    "shipping_delay": ("My order {o} was supposed to arrive {d} days ago and the tracking hasn't"
                       " moved.", "where is my package?? order {o}",
                       "The {p} still hasn't shipped, it's been {d} days."),
    "login": ("I can't log in, it says my password is wrong but I just reset it.",
              "Login page keeps looping back after I enter the 2FA code.",
              "locked out of my account since yesterday, please help"),
    "cancel_subscription": ("Please cancel my subscription before the next billing date.",
                            "How do I cancel? I can't find the option in settings.",
                            "I want to stop my plan, I don't use it anymore."),
    "billing_error": ("I was charged twice this month for the same plan.",
                      "My invoice shows {d} seats but we only have 3 users.",
                      "why was my card charged after I downgraded"),
    "damaged_item": ("The {p} arrived with a cracked case, order {o}.",
                     "Box was crushed and the {p} doesn't turn on.",
                     "received a damaged {p}, what are my options"),
    "change_address": ("I need to change the delivery address for order {o}.",
                       "Can you update my shipping address? I moved last week.",
                       "wrong address on order {o}, please fix"),
    "bug_report": ("The app crashes every time I open the settings page.",
                   "Export to CSV produces an empty file since the last update.",
                   "The {p} dashboard shows yesterday's data only."),
    "upgrade_plan": ("We'd like to upgrade to the team plan, what does it cost for {d} users?",
                     "How do I switch from monthly to annual billing?",
                     "Is there a discount if we upgrade {d} accounts at once?"),
    "data_request": ("Please send me a copy of all the personal data you hold about me.",
                     "I want my account and data deleted under GDPR.",
                     "How can I export my data before closing the account?"),
}
TICKET_INTENTS: tuple[str, ...] = tuple(_TICKETS)
REVIEW_CATEGORIES: tuple[str, ...] = tuple(_PRODUCTS)


def review(rng: random.Random, category: str | None = None) -> Prompt:
    """A product review for the sentiment classifier; the topic is ``review:<category>``."""
    category = category or rng.choice(REVIEW_CATEGORIES)
    product = rng.choice(_PRODUCTS[category])
    positive = rng.random() < 0.6
    first, second = rng.sample(_ASPECTS, 2)
    main = rng.choice(_POSITIVE if positive else _NEGATIVE)
    parts = [rng.choice(_OPENERS).format(p=product), f"The {first} {main}."]
    if rng.random() < 0.5:  # mixed reviews are common and the interesting cases
        other = rng.choice(_NEGATIVE if positive and rng.random() < 0.4 else _POSITIVE)
        parts.append(f"The {second} {other}.")
    parts.append(rng.choice(_CLOSERS_POS if positive else _CLOSERS_NEG))
    return Prompt(" ".join(part for part in parts if part), f"review:{category}", product)


_TICKET_DETAILS = (
    "I've been a customer for {d} years.", "This is the second time I'm writing about this.",
    "My account email is {name}@{domain}.", "I already tried logging out and back in.",
    "I ordered it on {day}.", "Your chatbot couldn't help.", "I'm on the {plan} plan.",
    "Screenshot attached.", "It happened again this morning.", "We have {d} people affected.",
)
_TICKET_ENDINGS = ("Thanks", "Thank you!", "Regards, {Name}", "pls respond asap", "- {Name}",
                   "Thanks in advance", "Best, {Name}")
_NAMES = ("anna", "raj", "li", "maria", "tom", "fatima", "jonas", "sofia", "kenji", "amara",
          "luca", "noah", "chloe", "diego", "olga", "sam")
_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com", "acme.io")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def ticket(rng: random.Random, intent: str | None = None) -> Prompt:
    """A customer support ticket for the intent classifier; the topic is ``ticket:<intent>``.

    A core sentence for the intent, optionally with a detail, a greeting or a sign-off,
    and the casing and urgency people actually type with.
    """
    intent = intent or rng.choice(TICKET_INTENTS)
    product = rng.choice(_PRODUCTS[rng.choice(REVIEW_CATEGORIES)])
    name = rng.choice(_NAMES)
    slots = {"o": f"#{rng.randint(10000, 99999)}", "p": product, "d": str(rng.randint(2, 14)),
             "name": name, "Name": name.title(), "domain": rng.choice(_DOMAINS),
             "day": rng.choice(_DAYS), "plan": rng.choice(("basic", "pro", "team"))}
    parts = [rng.choice(_TICKETS[intent])]
    if rng.random() < 0.5:
        parts.append(rng.choice(_TICKET_DETAILS))
    if rng.random() < 0.25:
        parts.insert(0, rng.choice(("Hi,", "Hello,", "Hi team,", "URGENT:", "Hey")))
    if rng.random() < 0.4:
        parts.append(rng.choice(_TICKET_ENDINGS))
    text = " ".join(parts).format_map(slots)
    return Prompt(text.lower() if rng.random() < 0.15 else text, f"ticket:{intent}", product)


# ------------------------------------------------------------------------- small edits

_SYNONYMS: dict[str, tuple[str, ...]] = {
    "excellent": ("great", "superb", "outstanding"), "great": ("good", "excellent", "nice"),
    "good": ("decent", "fine", "nice"), "terrible": ("awful", "bad", "horrible"),
    "awful": ("terrible", "dreadful", "bad"), "bad": ("poor", "awful", "not good"),
    "disappointing": ("underwhelming", "unsatisfying", "poor"), "cheap": ("flimsy", "low-end"),
    "perfectly": ("flawlessly", "fine", "well"), "recommend": ("suggest", "endorse"),
    "happy": ("pleased", "satisfied", "glad"), "annoyed": ("frustrated", "irritated"),
    "broke": ("failed", "cracked", "died"), "stopped": ("quit", "ceased"),
    "refund": ("reimbursement", "money back"), "cancel": ("end", "terminate", "stop"),
    "charged": ("billed", "debited"), "package": ("parcel", "order", "delivery"),
    "please": ("pls", "kindly"), "help": ("assist", "support"), "wrong": ("incorrect", "bad"),
    "damaged": ("broken", "dented", "cracked"), "crashes": ("freezes", "closes", "fails"),
    "really": ("very", "truly", "quite"), "want": ("need", "would like"),
}
_FILLERS = ("really", "very", "not", "quite", "just", "so", "actually", "totally", "kind of",
            "honestly", "pretty", "still")
_KEYBOARD = "abcdefghijklmnopqrstuvwxyz"


def _char_edit(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word) - 1)
    op = rng.randrange(4)
    if op == 0:  # substitute
        return word[:i] + rng.choice(_KEYBOARD) + word[i + 1:]
    if op == 1:  # delete
        return word[:i] + word[i + 1:]
    if op == 2:  # insert
        return word[:i] + rng.choice(_KEYBOARD) + word[i:]
    return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]  # transpose


def perturb(rng: random.Random, text: str, ops: str = "swap,synonym,char,insert,delete") -> str:
    """Apply one small edit to ``text``; ``ops`` restricts the kinds of edit allowed.

    Kinds: swap two adjacent words, replace a word by a synonym, edit one character,
    insert a filler word, delete a word. Always returns a different string.
    """
    allowed = ops.split(",")
    words = text.split()
    for _ in range(12):
        op = rng.choice(allowed)
        out = list(words)
        if op == "swap" and len(out) > 2:
            i = rng.randrange(len(out) - 1)
            out[i], out[i + 1] = out[i + 1], out[i]
        elif op == "synonym":
            candidates = [i for i, w in enumerate(out) if w.lower().strip(".,!?") in _SYNONYMS]
            if not candidates:
                continue
            i = rng.choice(candidates)
            stripped = out[i].lower().strip(".,!?")
            out[i] = out[i].lower().replace(stripped, rng.choice(_SYNONYMS[stripped]))
        elif op == "char":
            candidates = [i for i, w in enumerate(out) if len(w) > 3]
            if not candidates:
                continue
            i = rng.choice(candidates)
            out[i] = _char_edit(rng, out[i])
        elif op == "insert":
            out.insert(rng.randrange(len(out) + 1), rng.choice(_FILLERS))
        elif op == "delete" and len(out) > 3:
            del out[rng.randrange(len(out))]
        candidate = " ".join(out)
        if candidate != text:
            return candidate
    return text + "."
